"""Delivery: carries a certificate from a designated contact's request to a holder who can
sign with a PIN only they know.

Modules: ``contacts`` (one designated contact per province), ``holders``, ``requests`` (the
state machine and lead times), ``personalisation`` (token, key and certificate through hsm and
pki), ``batches`` (Amana courier batches and hand-overs), ``pins`` (wrong-PIN counter, PIN
change), ``reset`` (PIN reset by one-time code), ``envelopes`` (secrets sealed on the token
layer while they wait), ``outbox`` (transactional outbox and its worker), ``backends``
(Twilio, SMTP, console), ``messages`` (French and Arabic texts). See docs/delivery.md.
"""
