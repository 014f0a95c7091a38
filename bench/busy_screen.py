"""An X client that covers the screen with a detector-like image (diffraction rings and noise in false
colour) and holds it there: run inside a desktop by ``bench_far_node.py`` (python3 -c, DISPLAY=:1), with
only the standard library and the desktop's libX11 through ctypes."""
import ctypes as C, math, random, time
X = C.CDLL("libX11.so.6")
V, UL, I, U = C.c_void_p, C.c_ulong, C.c_int, C.c_uint
class Attrs(C.Structure):
    _fields_ = [("background_pixmap", UL), ("background_pixel", UL), ("border_pixmap", UL), ("border_pixel", UL),
                ("bit_gravity", I), ("win_gravity", I), ("backing_store", I), ("backing_planes", UL),
                ("backing_pixel", UL), ("save_under", I), ("event_mask", C.c_long), ("do_not_propagate_mask", C.c_long),
                ("override_redirect", I), ("colormap", UL), ("cursor", UL)]
for name, res, args in (("XOpenDisplay", V, [C.c_char_p]), ("XDefaultScreen", I, [V]), ("XRootWindow", UL, [V, I]),
        ("XDisplayWidth", I, [V, I]), ("XDisplayHeight", I, [V, I]), ("XDefaultVisual", V, [V, I]),
        ("XDefaultDepth", I, [V, I]), ("XDefaultGC", V, [V, I]), ("XCreatePixmap", UL, [V, UL, U, U, U]),
        ("XCreateImage", V, [V, V, U, I, I, C.c_char_p, U, U, I, I]),
        ("XPutImage", I, [V, UL, V, V, I, I, I, I, U, U]),
        ("XCreateSimpleWindow", UL, [V, UL, I, I, U, U, U, UL, UL]),
        ("XChangeWindowAttributes", I, [V, UL, UL, C.POINTER(Attrs)]), ("XMapRaised", I, [V, UL]),
        ("XSync", I, [V, I])):
    f = getattr(X, name); f.restype = res; f.argtypes = args
d = X.XOpenDisplay(None)
if not d:
    raise SystemExit("cannot open the display")
s = X.XDefaultScreen(d); root = X.XRootWindow(d, s)
w, h = X.XDisplayWidth(d, s), X.XDisplayHeight(d, s)
rng = random.Random(1)
pixels = bytearray(w * h * 4)
cx, cy = w * 0.45, h * 0.55
for y in range(h):
    row = y * w * 4
    for x in range(w):
        r = math.hypot(x - cx, y - cy)
        v = 110 + 90 * math.cos(r / 5.0) * math.exp(-r / 500.0) + rng.randint(-40, 40)
        v = 0 if v < 0 else 255 if v > 255 else int(v)
        g = v // 2 + 40 + rng.randint(-20, 20)
        pixels[row + 4 * x:row + 4 * x + 3] = bytes((255 - v, g, v))  # B, G, R
data = C.create_string_buffer(bytes(pixels), len(pixels))
image = X.XCreateImage(d, X.XDefaultVisual(d, s), X.XDefaultDepth(d, s), 2, 0, data, w, h, 32, 0)
pixmap = X.XCreatePixmap(d, root, w, h, X.XDefaultDepth(d, s))
X.XPutImage(d, pixmap, X.XDefaultGC(d, s), image, 0, 0, 0, 0, w, h)
window = X.XCreateSimpleWindow(d, root, 0, 0, w, h, 0, 0, 0)
attrs = Attrs(background_pixmap=pixmap, override_redirect=1)
X.XChangeWindowAttributes(d, window, (1 << 0) | (1 << 9), C.byref(attrs))
X.XMapRaised(d, window)
X.XSync(d, 0)
while True:
    time.sleep(3600)
