"""Errors of the delivery package (see core.errors for the model).

Invariant: no message and no ``extras`` entry ever carries a PIN or a one-time code.
"""

from __future__ import annotations

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unavailable


class InvalidHolder(InvalidInput):
    """A holder's registration fails validation (CIN, phone, email, names, role)."""

    type = "delivery-invalid-holder"
    title = "Invalid holder"


class InvalidContact(InvalidInput):
    type = "delivery-invalid-contact"
    title = "Invalid designated contact"


class InvalidTracking(InvalidInput):
    """A courier tracking number is not a UPU S10 number (e.g. ``EE123456785MA``)."""

    type = "delivery-invalid-tracking"
    title = "Invalid tracking number"


class HolderNotFound(NotFound):
    type = "delivery-holder-not-found"
    title = "Holder not found"


class ContactNotFound(NotFound):
    type = "delivery-contact-not-found"
    title = "Designated contact not found"


class RequestNotFound(NotFound):
    type = "delivery-request-not-found"
    title = "Certificate request not found"


class BatchNotFound(NotFound):
    type = "delivery-batch-not-found"
    title = "Courier batch not found"


class HolderExists(Conflict):
    """One holder, one CIN."""

    type = "delivery-holder-exists"
    title = "A holder with this CIN already exists"


class OutOfProvince(Forbidden):
    """A contact acts only on the holders and batches of their own prefecture/province."""

    type = "delivery-out-of-province"
    title = "Outside the contact's province"


class ContactInactive(Conflict):
    type = "delivery-contact-inactive"
    title = "The contact is no longer the designated contact"


class OpenRequestExists(Conflict):
    type = "delivery-open-request-exists"
    title = "The holder already has a request under way"


class IllegalTransition(Conflict):
    """The request (or batch) is not in a state that allows this step."""

    type = "delivery-illegal-transition"
    title = "Illegal state transition"


class BatchStateError(Conflict):
    type = "delivery-batch-state"
    title = "The batch is not in a state that allows this step"


class NotReadyToSign(Conflict):
    """Terms of use not accepted, or the PIN not changed since it was delivered."""

    type = "delivery-not-ready-to-sign"
    title = "The credential is not ready to sign"


class PinRejected(Forbidden):
    """The token refused the PIN; ``extras['attempts_left']`` when known."""

    type = "delivery-pin-rejected"
    title = "PIN rejected"


class PinLocked(Conflict):
    type = "delivery-pin-locked"
    title = "PIN locked: ask for a PIN reset"
    status = 423


class PinPolicy(InvalidInput):
    type = "delivery-pin-policy"
    title = "The new PIN does not satisfy the PIN policy"


class ResetRateLimited(RateLimited):
    type = "delivery-reset-rate-limited"
    title = "Too many PIN reset requests"


class ResetChallengeInvalid(Forbidden):
    """Wrong code or CIN; ``extras['attempts_left']`` says how many tries remain."""

    type = "delivery-reset-invalid"
    title = "Invalid one-time code"


class ResetChallengeNotFound(NotFound):
    """No such challenge for this holder: unknown, or another holder's (same answer)."""

    type = "delivery-reset-not-found"
    title = "PIN reset challenge not found"


class ResetChallengeClosed(Conflict):
    """The challenge expired, was used, or ran out of attempts: ask for a new code."""

    type = "delivery-reset-closed"
    title = "One-time code expired or already used"


class EnvelopeUnavailable(Conflict):
    """A secret envelope was already destroyed (its secret was delivered)."""

    type = "delivery-envelope-destroyed"
    title = "Secret already delivered and destroyed"


class TokenLayerUnavailable(Unavailable):
    type = "delivery-token-layer-unavailable"
    title = "Token layer unavailable"


class OutboxMessageNotFound(NotFound):
    type = "delivery-outbox-not-found"
    title = "Outbox message not found"


class ContactChangeNotFound(NotFound):
    """No change of this holder's mobile or email waits for confirmation."""

    type = "delivery-contact-change-not-found"
    title = "No contact change to confirm"


class ContactChangeInvalid(Forbidden):
    """Wrong confirmation code; ``extras['attempts_left']`` says how many tries remain."""

    type = "delivery-contact-change-invalid"
    title = "Invalid confirmation code"


class ContactChangeClosed(Conflict):
    """The change expired or ran out of attempts: the contact must ask for it again."""

    type = "delivery-contact-change-closed"
    title = "Confirmation code expired or exhausted"


class NoMandateInForce(Conflict):
    """The holder's mandates have all ended: no request can be made for them."""

    type = "delivery-no-mandate"
    title = "The holder has no mandate in force"


class MandateChangeBlocked(Conflict):
    """A change of mandate would leave a token under way for the old mandate: cancel its
    request first."""

    type = "delivery-mandate-change-blocked"
    title = "A request for the old mandate is under way"


class CampaignNotFound(NotFound):
    type = "delivery-campaign-not-found"
    title = "Campaign not found"


class CampaignExists(Conflict):
    type = "delivery-campaign-exists"
    title = "A campaign with this name exists"


class InvalidCampaign(InvalidInput):
    type = "delivery-invalid-campaign"
    title = "Invalid campaign"


class CampaignImportInvalid(InvalidInput):
    """The CSV file has errors: ``errors`` lists each with its line number; nothing was
    imported."""

    type = "delivery-campaign-import-invalid"
    title = "The list of the newly elected has errors"


class CampaignStateError(Conflict):
    type = "delivery-campaign-state"
    title = "The campaign is not in a state that allows this"
class SignInCodeInvalid(Forbidden):
    """A sign-in code that does not open: wrong, expired, used, out of attempts, or for a
    CIN that is not registered. One answer for all, so that nobody learns which CINs
    exist."""

    type = "delivery-signin-invalid"
    title = "Invalid sign-in code"
