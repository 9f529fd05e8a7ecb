"""Identifiers that more than one domain reads: the one source of each rule.

The Moroccan national ID card number (CIN) is written into certificates by ``pki`` and
registered by ``delivery``; both check it here, and the API's schemas (through
``delivery.validation``) state the same rule in the OpenAPI document.
"""

from __future__ import annotations

import re

#: Moroccan national ID card number: one or two letters then one to six digits.
CIN_PATTERN = re.compile(r"^[A-Z]{1,2}[0-9]{1,6}$")
CIN_RULE = "one or two letters followed by one to six digits (e.g. AB123456, K12345)"
