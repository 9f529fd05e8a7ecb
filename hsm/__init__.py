"""Tawqi's token layer: PKCS#11 tokens, the only home of private keys.

This package is the only code of Tawqi that imports python-pkcs11, and it imports nothing of
Tawqi's. See docs/hsm.md.
"""

from hsm.errors import (
    DecryptionFailed,
    HsmError,
    InvalidRequest,
    KeyAlreadyExists,
    KeyNotFound,
    LoginRequired,
    ModuleUnavailable,
    NoFreeSlot,
    OperationRefused,
    PinIncorrect,
    PinLocked,
    PinPolicyViolation,
    TokenAlreadyExists,
    TokenNotFound,
)
from hsm.keys import TokenECPrivateKey, TokenKey, TokenPrivateKey, TokenRSAPrivateKey
from hsm.library import DEFAULT_MODULE_PATH, KEY_TYPES, TokenLibrary, default_module_path
from hsm.pins import (
    InMemoryPinAttemptStore,
    PinAttemptStore,
    check_pin_policy,
    generate_pin,
)

__all__ = [
    "DEFAULT_MODULE_PATH",
    "KEY_TYPES",
    "DecryptionFailed",
    "HsmError",
    "InMemoryPinAttemptStore",
    "InvalidRequest",
    "KeyAlreadyExists",
    "KeyNotFound",
    "LoginRequired",
    "ModuleUnavailable",
    "NoFreeSlot",
    "OperationRefused",
    "PinAttemptStore",
    "PinIncorrect",
    "PinLocked",
    "PinPolicyViolation",
    "TokenAlreadyExists",
    "TokenECPrivateKey",
    "TokenKey",
    "TokenLibrary",
    "TokenNotFound",
    "TokenPrivateKey",
    "TokenRSAPrivateKey",
    "check_pin_policy",
    "default_module_path",
    "generate_pin",
]
