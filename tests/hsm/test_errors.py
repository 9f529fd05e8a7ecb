"""The error classes have the shape the API maps (type, title, status, detail, extras)."""

from __future__ import annotations

import pytest

import hsm.errors as errors

EXPECTED = {
    "HsmError": ("hsm-error", 500),
    "ModuleUnavailable": ("hsm-module-unavailable", 503),
    "TokenNotFound": ("token-not-found", 404),
    "KeyNotFound": ("key-not-found", 404),
    "PinIncorrect": ("pin-incorrect", 403),
    "PinLocked": ("pin-locked", 423),
    "PinPolicyViolation": ("pin-policy", 422),
    "TokenAlreadyExists": ("token-already-exists", 409),
    "LoginRequired": ("login-required", 401),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.HsmError) and issubclass(cls, Exception)
    slug, status = EXPECTED[name]
    assert (cls.type, cls.status) == (slug, status)
    assert isinstance(cls.title, str) and cls.title
    error = cls("Something happened.", token="t1", attempts_left=2)
    assert error.detail == "Something happened."
    assert error.extras == {"token": "t1", "attempts_left": 2}
    assert error.to_dict() == {"type": slug, "title": cls.title, "status": status,
                               "detail": "Something happened.", "token": "t1",
                               "attempts_left": 2}
    assert str(error) == "Something happened."


def test_every_error_slug_is_unique() -> None:
    classes = [obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, errors.HsmError)]
    slugs = [cls.type for cls in classes]
    assert len(slugs) == len(set(slugs))
