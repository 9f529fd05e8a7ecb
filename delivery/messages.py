"""The notification texts, in French and Arabic, one message carrying both languages.

A template names the parameters it needs; ``{secret}`` is where a PIN or a one-time code
goes, filled in by the outbox worker at send time and nowhere else. Parameters are plain,
non-secret values stored with the outbox row.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Template:
    name: str
    needs_secret: bool
    sms: str | None = None
    email_subject: str | None = None
    email_body: str | None = None

    def fields(self) -> set[str]:
        names: set[str] = set()
        for text in (self.sms, self.email_subject, self.email_body):
            if text:
                names |= {f for _, f, _, _ in string.Formatter().parse(text) if f}
        return names - {"secret"}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


_PIN_INITIAL_SMS = (
    "Tawqi : le code PIN de votre certificat de signature est {secret}. Changez-le à la "
    "première utilisation. Ne le communiquez à personne ; il ne voyage jamais avec la clé.\n"
    "توقيع: الرمز السري لشهادة توقيعكم هو {secret}. يرجى تغييره عند أول استعمال. "
    "لا تطلعوا عليه أحدا؛ لا يرسل أبدا مع المفتاح."
)
_PIN_INITIAL_EMAIL = (
    "Madame, Monsieur {name_fr},\n\n"
    "Votre certificat de signature électronique ({entity_fr}) est prêt. Le code PIN de "
    "votre support ({form_fr}) est :\n\n    {secret}\n\n"
    "Il vous est envoyé séparément du support, qui vous est remis par le correspondant "
    "désigné de votre province. Changez ce code à la première utilisation, avant votre "
    "première signature, et ne le communiquez à personne. Vous devrez aussi accepter les "
    "conditions d'utilisation.\n\n"
    "----\n\n"
    "السيد(ة) {name_ar}،\n\n"
    "شهادة توقيعكم الإلكتروني ({entity_ar}) جاهزة. الرمز السري لحاملكم ({form_ar}) هو:\n\n"
    "    {secret}\n\n"
    "يرسل إليكم هذا الرمز منفصلا عن الحامل الذي يسلمه لكم المخاطب المعين بإقليمكم. "
    "يرجى تغييره عند أول استعمال، قبل أول توقيع، وعدم إطلاع أي أحد عليه. "
    "كما يتعين عليكم قبول شروط الاستعمال.\n"
)
_RESET_CODE_SMS = (
    "Tawqi : votre code de vérification pour réinitialiser votre PIN est {secret}. "
    "Valable {ttl_minutes} minutes. Si vous n'avez rien demandé, ignorez ce message.\n"
    "توقيع: رمز التحقق لإعادة تعيين رمزكم السري هو {secret}. صالح لمدة {ttl_minutes} دقيقة. "
    "إذا لم تطلبوا ذلك، تجاهلوا هذه الرسالة."
)
_RESET_PIN_SMS = (
    "Tawqi : votre nouveau code PIN est {secret}. Changez-le avant votre prochaine "
    "signature. Ne le communiquez à personne.\n"
    "توقيع: رمزكم السري الجديد هو {secret}. يرجى تغييره قبل توقيعكم القادم. "
    "لا تطلعوا عليه أحدا."
)
_RESET_NOTICE_EMAIL = (
    "Madame, Monsieur {name_fr},\n\n"
    "Le code PIN de votre certificat de signature a été réinitialisé le {at} (UTC) ; le "
    "nouveau code a été envoyé par SMS au numéro enregistré se terminant par {phone_tail}. "
    "Si vous n'êtes pas à l'origine de cette demande, contactez immédiatement le "
    "correspondant désigné de votre province.\n\n"
    "----\n\n"
    "السيد(ة) {name_ar}،\n\n"
    "تمت إعادة تعيين الرمز السري لشهادة توقيعكم بتاريخ {at} (بالتوقيت العالمي)، وأرسل الرمز "
    "الجديد برسالة قصيرة إلى الرقم المسجل المنتهي بـ {phone_tail}. إذا لم تكونوا صاحب هذا "
    "الطلب، اتصلوا فورا بالمخاطب المعين بإقليمكم.\n"
)
_BATCH_DISPATCHED_EMAIL = (
    "Madame, Monsieur {contact_name},\n\n"
    "Un envoi Amana de {count} support(s) de signature pour {province_fr} vous a été "
    "expédié. Numéro de suivi : {tracking_number}. À réception, enregistrez-la puis "
    "consignez chaque remise à son titulaire. Les codes PIN ne sont pas dans le colis : "
    "ils sont envoyés directement aux titulaires.\n\n"
    "----\n\n"
    "السيد(ة) {contact_name}،\n\n"
    "أرسلت إليكم شحنة أمانة تضم {count} حاملا للتوقيع لفائدة {province_ar}. رقم التتبع: "
    "{tracking_number}. عند الاستلام، يرجى تسجيله ثم تسجيل كل تسليم لصاحبه. الرموز السرية "
    "ليست في الطرد، بل ترسل مباشرة إلى أصحابها.\n"
)

_SIGNING_CODE_SMS = (
    "Tawqi : code de signature {secret}, valable {ttl_minutes} minutes, pour autoriser "
    "{purpose_fr}. Ne le donnez qu'au moment de signer.\n"
    "توقيع: رمز التوقيع {secret}، صالح لمدة {ttl_minutes} دقيقة، للترخيص بـ{purpose_ar}. "
    "لا تدلوا به إلا عند التوقيع."
)

_CONTACT_CHANGED_SMS = (
    "Tawqi : le {what_fr} de votre dossier a été changé le {at} (UTC) pour : {new_hint}."
    " Vos codes vous parviendront à l'ancien tant que vous n'aurez "
    "pas confirmé le nouveau. Si ce n'est pas vous, contactez le correspondant de votre "
    "province.\n"
    "توقيع: تم تغيير {what_ar} في ملفكم بتاريخ {at} (بالتوقيت العالمي) إلى: {new_hint}."
    " ستصلكم الرموز على القديم إلى أن تؤكدوا الجديد. إذا لم تكونوا صاحب هذا "
    "التغيير، اتصلوا بالمخاطب المعين بإقليمكم."
)
_CONTACT_CHANGED_EMAIL = (
    "Madame, Monsieur {name_fr},\n\n"
    "Le {what_fr} enregistré pour vos notifications Tawqi a été changé le {at} (UTC) par "
    "{by}, pour : {new_hint}. Tant que vous ne l'aurez pas "
    "confirmé avec le code qui y est envoyé, vos codes PIN et de signature continueront "
    "d'arriver à l'ancien. Si vous n'êtes pas à l'origine de ce changement, contactez "
    "immédiatement le correspondant désigné de votre province.\n\n"
    "----\n\n"
    "السيد(ة) {name_ar}،\n\n"
    "تم تغيير {what_ar} المسجل لإشعارات توقيع بتاريخ {at} (بالتوقيت العالمي) من طرف {by} إلى: "
    "{new_hint}. إلى أن تؤكدوه بالرمز المرسل إليه، ستستمر رموزكم السرية ورموز "
    "التوقيع في الوصول إلى القديم. إذا لم تكونوا صاحب هذا التغيير، اتصلوا فورا بالمخاطب "
    "المعين بإقليمكم.\n"
)
_CONTACT_CODE_SMS = (
    "Tawqi : pour confirmer ce numéro pour vos codes de signature, saisissez le code "
    "{secret} (valable {ttl_hours} heures). Si vous n'avez rien demandé, ignorez ce message.\n"
    "توقيع: لتأكيد هذا الرقم لرموز التوقيع، أدخلوا الرمز {secret} (صالح لمدة {ttl_hours} "
    "ساعة). إذا لم تطلبوا ذلك، تجاهلوا هذه الرسالة."
)
_CONTACT_CODE_EMAIL = (
    "Madame, Monsieur {name_fr},\n\n"
    "Pour confirmer cette adresse pour vos notifications Tawqi, saisissez le code {secret} "
    "(valable {ttl_hours} heures). Si vous n'avez rien demandé, ignorez ce message.\n\n"
    "----\n\n"
    "السيد(ة) {name_ar}،\n\n"
    "لتأكيد هذا العنوان لإشعارات توقيع، أدخلوا الرمز {secret} (صالح لمدة {ttl_hours} ساعة). "
    "إذا لم تطلبوا ذلك، تجاهلوا هذه الرسالة.\n"
)

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("pin.initial", True, sms=_PIN_INITIAL_SMS,
             email_subject="Tawqi — votre code PIN / رمزكم السري",
             email_body=_PIN_INITIAL_EMAIL),
    Template("reset.code", True, sms=_RESET_CODE_SMS),
    Template("signing.code", True, sms=_SIGNING_CODE_SMS),
    Template("pin.reset", True, sms=_RESET_PIN_SMS),
    Template("pin.reset_notice", False,
             email_subject="Tawqi — réinitialisation de votre PIN / إعادة تعيين رمزكم السري",
             email_body=_RESET_NOTICE_EMAIL),
    Template("contact.changed", False, sms=_CONTACT_CHANGED_SMS,
             email_subject="Tawqi — changement de vos coordonnées / تغيير معلومات الاتصال",
             email_body=_CONTACT_CHANGED_EMAIL),
    Template("contact.code", True, sms=_CONTACT_CODE_SMS,
             email_subject="Tawqi — confirmez vos coordonnées / أكدوا معلومات الاتصال",
             email_body=_CONTACT_CODE_EMAIL),
    Template("batch.dispatched", False,
             email_subject="Tawqi — envoi Amana {tracking_number} / شحنة أمانة",
             email_body=_BATCH_DISPATCHED_EMAIL),
)}


class _Strict(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise KeyError(f"template parameter {key!r} missing")


def render(name: str, channel: str, params: Mapping[str, Any],
           secret: str | None = None) -> Rendered:
    """The text of template ``name`` for ``channel`` (``sms`` or ``email``).

    The returned text contains ``secret`` in clear: hand it to a backend and drop it."""
    template = TEMPLATES[name]
    if template.needs_secret and secret is None:
        raise ValueError(f"template {name} needs its secret")
    values = _Strict(params)
    values["secret"] = secret or ""
    if channel == "sms":
        if template.sms is None:
            raise ValueError(f"template {name} has no SMS text")
        return Rendered("", template.sms.format_map(values))
    if template.email_body is None or template.email_subject is None:
        raise ValueError(f"template {name} has no email text")
    return Rendered(template.email_subject.format_map(values),
                    template.email_body.format_map(values))


# ----------------------------------------------------------- scheduled notices (api/jobs.py)

_EXPIRY_HOLDER_SMS = (
    "Tawqi : votre certificat de signature ({entity_fr}) expire le {not_after}, dans {days} "
    "jours. Demandez son renouvellement au correspondant désigné de votre province.\n"
    "توقيع: تنتهي صلاحية شهادة توقيعكم ({entity_ar}) بتاريخ {not_after}، أي بعد {days} يوما. "
    "يرجى طلب تجديدها لدى المخاطب المعين بإقليمكم."
)
_EXPIRY_HOLDER_EMAIL = (
    "Madame, Monsieur {name_fr},\n\n"
    "Votre certificat de signature électronique ({entity_fr}) expire le {not_after} (dans "
    "{days} jours). Après cette date, vous ne pourrez plus signer avec lui. Demandez dès "
    "maintenant son renouvellement au correspondant désigné de votre province.\n\n"
    "----\n\n"
    "السيد(ة) {name_ar}،\n\n"
    "تنتهي صلاحية شهادة توقيعكم الإلكتروني ({entity_ar}) بتاريخ {not_after} (بعد {days} "
    "يوما). بعد هذا التاريخ لن يكون بإمكانكم التوقيع بها. يرجى طلب تجديدها من الآن لدى "
    "المخاطب المعين بإقليمكم.\n"
)
_EXPIRY_CONTACT_EMAIL = (
    "Madame, Monsieur {contact_name},\n\n"
    "Le certificat de signature de {holder_fr} ({entity_fr}) expire le {not_after} (dans "
    "{days} jours). Pour que la signature des autorisations ne soit pas interrompue, "
    "soumettez dès maintenant une demande de renouvellement.\n\n"
    "----\n\n"
    "السيد(ة) {contact_name}،\n\n"
    "تنتهي صلاحية شهادة توقيع {holder_ar} ({entity_ar}) بتاريخ {not_after} (بعد {days} "
    "يوما). حتى لا يتوقف توقيع الرخص، يرجى تقديم طلب التجديد من الآن.\n"
)
_HANDOVER_REMINDER_EMAIL = (
    "Madame, Monsieur {contact_name},\n\n"
    "{count} support(s) de signature reçu(s) pour {province_fr} attend(ent) depuis plus de "
    "{days} jours d'être remis à leur titulaire :\n\n{items}\n\n"
    "Remettez chaque support à son titulaire et consignez la remise : tant qu'elle n'est "
    "pas consignée, son certificat ne peut pas être activé et il ne peut pas signer.\n\n"
    "----\n\n"
    "السيد(ة) {contact_name}،\n\n"
    "{count} من حوامل التوقيع المستلمة لفائدة {province_ar} تنتظر منذ أكثر من {days} أيام "
    "تسليمها إلى أصحابها:\n\n{items}\n\n"
    "يرجى تسليم كل حامل إلى صاحبه وتسجيل التسليم: ما لم يسجل، لا يمكن تفعيل شهادته ولا "
    "يمكنه التوقيع.\n"
)

TEMPLATES.update({t.name: t for t in (
    Template("expiry.holder", False, sms=_EXPIRY_HOLDER_SMS,
             email_subject="Tawqi — votre certificat expire le {not_after} / "
                           "تنتهي صلاحية شهادتكم بتاريخ {not_after}",
             email_body=_EXPIRY_HOLDER_EMAIL),
    Template("expiry.contact", False,
             email_subject="Tawqi — certificat de {holder_fr} : expiration le {not_after} / "
                           "انتهاء صلاحية شهادة {holder_ar}",
             email_body=_EXPIRY_CONTACT_EMAIL),
    Template("handover.reminder", False,
             email_subject="Tawqi — remises en attente ({province_fr}) / "
                           "تسليمات متأخرة ({province_ar})",
             email_body=_HANDOVER_REMINDER_EMAIL),
)})


_CAMPAIGN_STATUS_EMAIL = (
    "Madame, Monsieur {contact_name},\n\n"
    "Campagne « {campaign} » — installation des conseils le {installation_date}.\n"
    "{province_fr} : {count} siège(s), dont {blocked} sans personne pouvant signer "
    "(les plus anciens d'abord) :\n\n{items}\n\n"
    "Pour qu'une commune puisse signer dès l'installation, remettez chaque jeton à son "
    "titulaire et consignez la remise le jour même.\n\n"
    "----\n\n"
    "السيد(ة) {contact_name}،\n\n"
    "حملة « {campaign} » — تنصيب المجالس بتاريخ {installation_date}.\n"
    "{province_ar}: {count} مقعدا، منها {blocked} بدون أي شخص يمكنه التوقيع "
    "(الأقدم أولا):\n\n{items}\n\n"
    "حتى تتمكن كل جماعة من التوقيع منذ التنصيب، يرجى تسليم كل جهاز توقيع إلى صاحبه وتسجيل "
    "التسليم في نفس اليوم.\n"
)

TEMPLATES.update({t.name: t for t in (
    Template("campaign.status", False,
             email_subject="Tawqi — {campaign} : état de {province_fr} / "
                           "وضعية {province_ar}",
             email_body=_CAMPAIGN_STATUS_EMAIL),
)})
