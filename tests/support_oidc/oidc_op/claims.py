"""OIDC_USERINFO of the test provider: the standard claims a facility's provider sends."""


def userinfo(claims, user):
    """preferred_username, name and e-mail from the Django user; the e-mail is verified when
    the user's ``last_name`` is not "unverified" (a knob for the tests)."""
    claims["name"] = user.get_full_name() or user.username
    claims["given_name"] = user.first_name
    claims["family_name"] = user.last_name
    claims["preferred_username"] = user.username
    claims["email"] = user.email
    claims["email_verified"] = bool(user.email) and user.last_name != "unverified"
    return claims
