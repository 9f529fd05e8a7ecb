"""The notification texts, in French and Arabic.

An SMS is in **one language**, the holder's (``params["lang"]``, ``fr`` when absent), puts the
code first when it carries one, and fits two segments (:mod:`delivery.sms` counts them; a test
renders every SMS with the longest names). An email carries both languages. Texts that
differ between a **hosted** key and a **device** token are chosen by ``params["form"]``.

Counted things agree with their number (``{days_words}``, ``{ttl_minutes_words}``,
``{ttl_hours_words}``, ``{count_words}``, made here from ``days``, ``ttl_minutes``...):
French singular and plural, the Arabic forms for one, two, three to ten, eleven to ninety-nine
and a hundred or more. The glossary is the web pages': token = jeton / جهاز التوقيع, holder =
titulaire / صاحب الشهادة, contact = contact / المنسق.

``{secret}`` is where a PIN or a one-time code goes, filled in by the outbox worker at send
time and nowhere else. Parameters are plain, non-secret values stored with the outbox row.

The holder is addressed by civility and named by the title of their mandate, both from
:mod:`delivery.titles` (``civility`` and ``role`` parameters): ``{greeting_fr}`` ("Madame
Fatima Alaoui"), ``{greeting_ar}`` ("السيدة فاطمة العلوي المحترمة", the adjective agreeing),
``{capacity_fr}`` / ``{capacity_ar}`` (" en qualité de Présidente du conseil de la commune" /
" بصفتكم رئيسة مجلس الجماعة") and ``{styled_fr}`` / ``{styled_ar}`` (name, then title) are
made here. A row queued before these parameters existed renders with the name alone.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from delivery.titles import CIVILITIES, ROLES, civility_label, title_for

LANGS = ("fr", "ar")
#: Parameters not taken from the caller's values but computed, or optional.
OPTIONAL = {"secret", "lang", "form", "civility", "role"}
#: Made from ``civility``, ``role`` and the person's name (see the module's docstring).
COMPUTED = {"greeting_fr", "greeting_ar", "capacity_fr", "capacity_ar", "styled_fr",
            "styled_ar", "the_what_fr", "registered_fr", "changed_fr", "confirmed_fr",
            "to_old_fr"}
#: What a computed parameter is made from.
_MADE_FROM = {"greeting": ("name_fr", "name_ar"), "capacity": ("name_fr", "name_ar"),
              "styled": ("holder_fr", "holder_ar")}

#: Counted parameters: French (singular, plural), Arabic (one, two, few, many, other).
_COUNTED: dict[str, tuple[tuple[str, str], tuple[str, str, str, str, str]]] = {
    "ttl_minutes": (("{n} minute", "{n} minutes"),
                    ("دقيقة واحدة", "دقيقتين", "{n} دقائق", "{n} دقيقة", "{n} دقيقة")),
    "ttl_hours": (("{n} heure", "{n} heures"),
                  ("ساعة واحدة", "ساعتين", "{n} ساعات", "{n} ساعة", "{n} ساعة")),
    "days": (("{n} jour", "{n} jours"),
             ("يوم واحد", "يومين", "{n} أيام", "{n} يوما", "{n} يوم")),
    "count": (("{n} jeton", "{n} jetons"),
              ("جهاز توقيع واحد", "جهازي توقيع", "{n} أجهزة توقيع", "{n} جهاز توقيع",
               "{n} جهاز توقيع")),
    "seats": (("{n} siège", "{n} sièges"),
              ("مقعد واحد", "مقعدان", "{n} مقاعد", "{n} مقعدا", "{n} مقعد")),
}
#: ``{<name>_words}`` counting the parameter ``source`` with the words of ``key``.
_COUNTED_AS = {"count_seats": ("count", "seats")}


def arabic_form(n: int) -> int:
    """The CLDR Arabic plural category of ``n`` as an index: one, two, few, many, other
    (zero reads as other here)."""
    rest = n % 100
    if n == 1:
        return 0
    if n == 2:
        return 1
    if 3 <= rest <= 10:
        return 2
    if 11 <= rest <= 99:
        return 3
    return 4


def counted(key: str, n: int, lang: str) -> str:
    """``n`` things of ``key`` in ``lang``, with the agreement of the language."""
    french, arabic = _COUNTED[key]
    if lang == "ar":
        return arabic[arabic_form(n)].format(n=n)
    return (french[0] if abs(n) <= 1 else french[1]).format(n=n)


@dataclass(frozen=True)
class Template:
    """``sms`` maps ``lang`` or ``lang.form`` to a one-language text."""

    name: str
    needs_secret: bool
    sms: Mapping[str, str] | None = None
    email_subject: str | None = None
    email_body: str | None = None
    email_variants: Mapping[str, str] = field(default_factory=dict)

    def texts(self) -> list[str]:
        return [*(self.sms or {}).values(), *(t for t in (self.email_subject,
                                                          self.email_body) if t),
                *self.email_variants.values()]

    def fields(self) -> set[str]:
        names: set[str] = set()
        for text in self.texts():
            for _, name, _, _ in string.Formatter().parse(text):
                if name:
                    base = name[:-len("_words")] if name.endswith("_words") else name
                    names.add(_COUNTED_AS[base][0] if base in _COUNTED_AS else base)
                    names.update(_MADE_FROM.get(name.rpartition("_")[0], ()))
                    if name in COMPUTED and name.endswith("what_fr"):
                        names.add("what_fr")
        return names - OPTIONAL - COMPUTED

    def sms_text(self, lang: str, form: str | None) -> str:
        if not self.sms:
            raise ValueError(f"template {self.name} has no SMS text")
        for key in (f"{lang}.{form}", lang, "fr"):
            if key in self.sms:
                return self.sms[key]
        raise ValueError(f"template {self.name} has no SMS text in {lang}")


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


# ----------------------------------------------------------------------------- SMS texts

_PIN_INITIAL_SMS = {
    "fr.hosted": "{secret} : code PIN de votre certificat Tawqi hébergé. Changez-le sur votre "
                 "page Tawqi avant la 1re signature. Ne le donnez à personne.",
    "fr.device": "{secret} : code PIN de votre jeton de signature Tawqi, remis par le contact "
                 "de votre province. Changez-le à la 1re utilisation. Ne le donnez à personne.",
    "ar.hosted": "{secret}: الرمز السري لشهادتكم المستضافة لدى توقيع. غيروه في صفحتكم قبل أول "
                 "توقيع، ولا تطلعوا عليه أحدا.",
    "ar.device": "{secret}: الرمز السري لجهاز التوقيع الذي يسلمه لكم المنسق بإقليمكم. غيروه عند "
                 "أول استعمال، ولا تطلعوا عليه أحدا.",
}
_PIN_INITIAL_SMS["fr"] = _PIN_INITIAL_SMS["fr.device"]
_PIN_INITIAL_SMS["ar"] = _PIN_INITIAL_SMS["ar.device"]

_RESET_CODE_SMS = {
    "fr": "{secret} : code Tawqi pour réinitialiser votre PIN, valable {ttl_minutes_words}. "
          "Si vous n'avez rien demandé, ignorez ce message.",
    "ar": "{secret}: رمز التحقق لإعادة تعيين رمزكم السري، صالح لمدة {ttl_minutes_words}. إذا "
          "لم تطلبوه، تجاهلوا هذه الرسالة.",
}
_RESET_PIN_SMS = {
    "fr": "{secret} : votre nouveau code PIN Tawqi. Changez-le avant votre prochaine "
          "signature. Ne le donnez à personne.",
    "ar": "{secret}: رمزكم السري الجديد في توقيع. غيروه قبل توقيعكم القادم، ولا تطلعوا عليه "
          "أحدا.",
}
_SIGNING_CODE_SMS = {
    "fr": "{secret} : code de signature Tawqi, valable {ttl_minutes_words}, pour autoriser "
          "{purpose_fr}. Ne le donnez qu'au moment de signer.",
    "ar": "{secret}: رمز التوقيع، صالح لمدة {ttl_minutes_words}، للترخيص بـ{purpose_ar}. لا "
          "تدلوا به إلا عند التوقيع.",
}
_SIGNIN_CODE_SMS = {
    "fr": "{secret} : code de connexion Tawqi, valable {ttl_minutes_words}. Ne le donnez à "
          "personne.",
    "ar": "{secret}: رمز الدخول إلى توقيع، صالح لمدة {ttl_minutes_words}. لا تطلعوا عليه أحدا.",
}
_CONTACT_CODE_SMS = {
    "fr": "{secret} : code Tawqi pour confirmer ce numéro, valable {ttl_hours_words}. Si vous "
          "n'avez rien demandé, ignorez ce message.",
    "ar": "{secret}: رمز توقيع لتأكيد هذا الرقم، صالح لمدة {ttl_hours_words}. إذا لم تطلبوه، "
          "تجاهلوا هذه الرسالة.",
}
_CONTACT_CHANGED_SMS = {
    "fr": "Tawqi : votre {what_fr} a été {changed_fr} le {at} (UTC) pour {new_hint}. Vos codes "
          "vont {to_old_fr} jusqu'à confirmation. Si ce n'est pas vous, appelez le contact "
          "de votre province.",
    "ar": "توقيع: غير {what_ar} يوم {at} إلى {new_hint}. إن لم تكونوا أنتم، اتصلوا "
          "بالمنسق.",
}
_EXPIRY_HOLDER_SMS = {
    "fr": "Tawqi : votre certificat de signature ({entity_fr}) expire le {not_after}, dans "
          "{days_words}. Demandez son renouvellement au contact de votre province.",
    "ar": "توقيع: تنتهي صلاحية شهادة توقيعكم ({entity_ar}) يوم {not_after}، بعد {days_words}. "
          "اطلبوا تجديدها من المنسق بإقليمكم.",
}

# --------------------------------------------------------------------------- email texts

_GREETING = "Bonjour {greeting_fr},\n\n"
_GREETING_AR = "{greeting_ar}،\n\n"

_PIN_INITIAL_EMAIL_DEVICE = (
    _GREETING +
    "Votre certificat de signature électronique{capacity_fr} ({entity_fr}) est prêt, sur un "
    "jeton de "
    "signature ({form_fr}) que le contact désigné de votre province vous remettra. Le code "
    "PIN de ce jeton est :\n\n    {secret}\n\n"
    "Il vous est envoyé séparément du jeton. Changez ce code à la première utilisation, "
    "avant votre première signature, et ne le communiquez à personne. Vous devrez aussi accepter "
    "les conditions d'utilisation.\n\n"
    "----\n\n" + _GREETING_AR +
    "شهادة توقيعكم الإلكتروني{capacity_ar} ({entity_ar}) جاهزة على جهاز توقيع ({form_ar}) "
    "سيسلمه لكم "
    "المنسق المعين بإقليمكم. الرمز السري لهذا الجهاز هو:\n\n    {secret}\n\n"
    "يرسل إليكم هذا الرمز منفصلا عن الجهاز. يرجى تغييره عند أول استعمال، قبل أول توقيع، "
    "وعدم إطلاع أي أحد عليه. كما يتعين عليكم قبول شروط الاستعمال.\n"
)
_PIN_INITIAL_EMAIL_HOSTED = (
    _GREETING +
    "Votre certificat de signature électronique{capacity_fr} ({entity_fr}) est prêt. Sa clé "
    "est gardée "
    "dans le module de sécurité du service ({form_fr}) : aucun objet ne vous sera remis. "
    "Le code PIN qui l'active est :\n\n    {secret}\n\n"
    "Changez ce code sur votre page Tawqi avant votre première signature et ne le "
    "communiquez à personne. Vous devrez aussi accepter les conditions d'utilisation.\n\n"
    "----\n\n" + _GREETING_AR +
    "شهادة توقيعكم الإلكتروني{capacity_ar} ({entity_ar}) جاهزة. مفتاحها محفوظ في وحدة الأمان "
    "لدى "
    "المزود ({form_ar})، ولن يسلم لكم أي جهاز. الرمز السري الذي يفعله هو:\n\n    {secret}\n\n"
    "يرجى تغييره في صفحتكم على توقيع قبل أول توقيع، وعدم إطلاع أي أحد عليه. كما يتعين "
    "عليكم قبول شروط الاستعمال.\n"
)
_RESET_NOTICE_EMAIL = (
    _GREETING +
    "Le code PIN de votre certificat de signature a été réinitialisé le {at} (UTC) ; le "
    "nouveau code a été envoyé par SMS au numéro enregistré se terminant par {phone_tail}. "
    "Si vous n'êtes pas à l'origine de cette demande, contactez immédiatement le contact "
    "désigné de votre province.\n\n"
    "----\n\n" + _GREETING_AR +
    "تمت إعادة تعيين الرمز السري لشهادة توقيعكم يوم {at} (بالتوقيت العالمي)، وأرسل الرمز "
    "الجديد برسالة قصيرة إلى الرقم المسجل المنتهي بـ {phone_tail}. إذا لم تطلبوا ذلك، "
    "اتصلوا فورا بالمنسق المعين بإقليمكم.\n"
)
_BATCH_DISPATCHED_EMAIL = (
    "Bonjour {contact_name},\n\n"
    "Un envoi Amana de {count_words} de signature pour {province_fr} vous a été expédié. "
    "Numéro de suivi : {tracking_number}. À sa réception, enregistrez-la, puis consignez la "
    "remise de chaque jeton à son titulaire. Les codes PIN ne sont pas dans le colis : ils "
    "sont envoyés directement aux titulaires.\n\n"
    "----\n\n"
    "السلام عليكم {contact_name}،\n\n"
    "أرسلت إليكم شحنة أمانة تضم {count_words} لفائدة {province_ar}. رقم التتبع: "
    "{tracking_number}. عند الاستلام، يرجى تسجيله ثم تسجيل تسليم كل جهاز إلى صاحب الشهادة. "
    "الرموز السرية ليست في الطرد، بل ترسل مباشرة إلى أصحاب الشهادات.\n"
)
_CONTACT_CHANGED_EMAIL = (
    _GREETING +
    "{the_what_fr} {registered_fr} pour vos notifications Tawqi a été {changed_fr} le {at} "
    "(UTC) par {by}, pour : {new_hint}. Tant que vous ne l'aurez pas {confirmed_fr} avec le "
    "code qui y est envoyé, vos codes PIN et de signature continueront d'arriver {to_old_fr}. "
    "Si vous "
    "n'êtes pas à l'origine de ce changement, contactez immédiatement le contact désigné "
    "de votre province.\n\n"
    "----\n\n" + _GREETING_AR +
    "غير {what_ar} المسجل لإشعارات توقيع يوم {at} (بالتوقيت العالمي) من طرف {by} إلى: "
    "{new_hint}. إلى أن تؤكدوه بالرمز المرسل إليه، ستستمر رموزكم السرية ورموز التوقيع في "
    "الوصول إلى القديم. إذا لم تطلبوا هذا التغيير، اتصلوا فورا بالمنسق المعين بإقليمكم.\n"
)
_CONTACT_CODE_EMAIL = (
    _GREETING +
    "Pour confirmer cette adresse pour vos notifications Tawqi, saisissez le code {secret} "
    "(valable {ttl_hours_words}). Si vous n'avez rien demandé, ignorez ce message.\n\n"
    "----\n\n" + _GREETING_AR +
    "لتأكيد هذا العنوان لإشعارات توقيع، أدخلوا الرمز {secret} (صالح لمدة {ttl_hours_words}). "
    "إذا لم تطلبوا ذلك، تجاهلوا هذه الرسالة.\n"
)
_EXPIRY_HOLDER_EMAIL = (
    _GREETING +
    "Votre certificat de signature électronique{capacity_fr} ({entity_fr}) expire le "
    "{not_after}, dans "
    "{days_words}. Après cette date, vous ne pourrez plus signer avec lui. Demandez dès "
    "maintenant son renouvellement au contact désigné de votre province.\n\n"
    "----\n\n" + _GREETING_AR +
    "تنتهي صلاحية شهادة توقيعكم الإلكتروني{capacity_ar} ({entity_ar}) يوم {not_after}، بعد "
    "{days_words}. "
    "بعد هذا التاريخ لن يكون بإمكانكم التوقيع بها. يرجى طلب تجديدها من الآن لدى المنسق "
    "المعين بإقليمكم.\n"
)
_EXPIRY_CONTACT_EMAIL = (
    "Bonjour {contact_name},\n\n"
    "Le certificat de signature de {styled_fr} ({entity_fr}) expire le {not_after}, dans "
    "{days_words}. Pour que la signature des autorisations ne soit pas interrompue, "
    "soumettez dès maintenant une demande de renouvellement.\n\n"
    "----\n\n"
    "السلام عليكم {contact_name}،\n\n"
    "تنتهي صلاحية شهادة توقيع {styled_ar} ({entity_ar}) يوم {not_after}، بعد {days_words}. "
    "حتى لا يتوقف توقيع الرخص، يرجى تقديم طلب التجديد من الآن.\n"
)
_HANDOVER_REMINDER_EMAIL = (
    "Bonjour {contact_name},\n\n"
    "Jetons de signature reçus pour {province_fr} et pas encore remis à leur titulaire "
    "depuis plus de {days_words} : {count}.\n\n{items}\n\n"
    "Remettez chaque jeton à son titulaire et consignez la remise : tant qu'elle n'est "
    "pas consignée, le certificat ne peut pas être activé et son titulaire ne peut pas "
    "signer.\n\n"
    "----\n\n"
    "السلام عليكم {contact_name}،\n\n"
    "أجهزة التوقيع المستلمة لفائدة {province_ar} والتي لم تسلم إلى أصحاب الشهادات منذ أكثر "
    "من {days_words}: {count}.\n\n{items}\n\n"
    "يرجى تسليم كل جهاز إلى صاحب الشهادة وتسجيل التسليم: ما لم يسجل، لا يمكن تفعيل الشهادة "
    "ولا يمكن لصاحبها التوقيع.\n"
)

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("pin.initial", True, sms=_PIN_INITIAL_SMS,
             email_subject="Tawqi — votre code PIN / رمزكم السري",
             email_body=_PIN_INITIAL_EMAIL_DEVICE,
             email_variants={"device": _PIN_INITIAL_EMAIL_DEVICE,
                             "hosted": _PIN_INITIAL_EMAIL_HOSTED}),
    Template("reset.code", True, sms=_RESET_CODE_SMS),
    Template("signing.code", True, sms=_SIGNING_CODE_SMS),
    Template("signin.code", True, sms=_SIGNIN_CODE_SMS),
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
    Template("expiry.holder", False, sms=_EXPIRY_HOLDER_SMS,
             email_subject="Tawqi — votre certificat expire le {not_after} / "
                           "تنتهي صلاحية شهادتكم يوم {not_after}",
             email_body=_EXPIRY_HOLDER_EMAIL),
    Template("expiry.contact", False,
             email_subject="Tawqi — certificat de {holder_fr} : expiration le {not_after} / "
                           "انتهاء صلاحية شهادة {holder_ar}",
             email_body=_EXPIRY_CONTACT_EMAIL),
    Template("handover.reminder", False,
             email_subject="Tawqi — remises en attente ({province_fr}) / "
                           "تسليمات متأخرة ({province_ar})",
             email_body=_HANDOVER_REMINDER_EMAIL),
)}


class _Strict(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise KeyError(f"template parameter {key!r} missing")


_HONORIFIC_AR = {"mr": "المحترم", "mrs": "المحترمة"}


def _person(values: dict[str, Any], params: Mapping[str, Any]) -> None:
    """The greeting, capacity and styled name of the holder a notice is about, agreeing
    with their civility; by name alone when the row carries no civility or role."""
    civility, role = params.get("civility"), params.get("role")
    known = civility in CIVILITIES
    titled = known and role in ROLES
    for lang in ("fr", "ar"):
        name = str(params.get(f"name_{lang}") or params.get(f"holder_{lang}") or "")
        if known:
            greeting = f"{civility_label(str(civility), lang)} {name}"
            styled = greeting
        else:
            greeting = name if lang == "fr" else f"السلام عليكم {name}"
            styled = name
        if lang == "ar" and known:
            greeting = f"{greeting} {_HONORIFIC_AR[str(civility)]}"
        capacity = ""
        if titled:
            title = title_for(str(role), str(civility), lang)
            capacity = f" en qualité de {title}" if lang == "fr" else f" بصفتكم {title}"
            styled = f"{styled}, {title}" if lang == "fr" else f"{styled}، {title}"
        values[f"greeting_{lang}"] = greeting
        values[f"capacity_{lang}"] = capacity
        values[f"styled_{lang}"] = styled


def _agreement(values: dict[str, Any], params: Mapping[str, Any]) -> None:
    """French agreement with the changed contact detail: "le numéro ... changé",
    "l'adresse ... changée"."""
    what = params.get("what_fr")
    if not isinstance(what, str):
        return
    feminine = what.startswith("adresse")
    values["the_what_fr"] = f"L'{what}" if feminine else f"Le {what}"
    ending = "e" if feminine else ""
    values["registered_fr"] = f"enregistré{ending}"
    values["changed_fr"] = f"changé{ending}"
    values["confirmed_fr"] = f"confirmé{ending}"
    values["to_old_fr"] = "à l'ancienne adresse" if feminine else "à l'ancien numéro"


def _values(params: Mapping[str, Any], lang: str, secret: str | None) -> _Strict:
    values = _Strict(params)
    values["secret"] = secret or ""
    _person(values, params)
    _agreement(values, params)
    wanted = [(key, key, key) for key in _COUNTED]
    wanted += [(name, source, key) for name, (source, key) in _COUNTED_AS.items()]
    for name, source, key in wanted:
        raw = params.get(source)
        if raw is None:
            continue
        number = raw if isinstance(raw, int) else int(raw) if str(raw).isdigit() else None
        values[f"{name}_words"] = counted(key, number, lang) if number is not None \
            else str(raw)
    return values


def render(name: str, channel: str, params: Mapping[str, Any],
           secret: str | None = None) -> Rendered:
    """The text of template ``name`` for ``channel`` (``sms`` or ``email``).

    The returned text contains ``secret`` in clear: hand it to a backend and drop it."""
    template = TEMPLATES[name]
    if template.needs_secret and secret is None:
        raise ValueError(f"template {name} needs its secret")
    lang = params.get("lang") if params.get("lang") in LANGS else "fr"
    form = params.get("form")
    if channel == "sms":
        text = template.sms_text(str(lang), form if isinstance(form, str) else None)
        return Rendered("", text.format_map(_values(params, str(lang), secret)))
    if template.email_body is None or template.email_subject is None:
        raise ValueError(f"template {name} has no email text")
    body = template.email_variants.get(str(form), template.email_body)
    # an email carries both languages: the French counts in the French half
    values = _values(params, "fr", secret)
    french, sep, arabic = body.partition("----\n\n")
    text = french.format_map(values)
    if sep:
        text += sep + arabic.format_map(_values(params, "ar", secret))
    return Rendered(template.email_subject.format_map(values), text)


# ----------------------------------------------------------- election campaigns

_CAMPAIGN_STATUS_EMAIL = (
    "Bonjour {contact_name},\n\n"
    "Campagne « {campaign} » — installation des conseils le {installation_date}.\n"
    "{province_fr} : {count_seats_words} ; sans personne pouvant signer : {blocked} "
    "(les plus anciens d'abord) :\n\n{items}\n\n"
    "Pour qu'une commune puisse signer dès l'installation, remettez chaque jeton à son "
    "titulaire et consignez la remise le jour même.\n\n"
    "----\n\n"
    "السلام عليكم {contact_name}،\n\n"
    "حملة « {campaign} » — تنصيب المجالس بتاريخ {installation_date}.\n"
    "{province_ar}: {count_seats_words}؛ المقاعد بدون أي شخص يمكنه التوقيع: {blocked} "
    "(الأقدم أولا):\n\n{items}\n\n"
    "حتى تتمكن كل جماعة من التوقيع منذ التنصيب، يرجى تسليم كل جهاز توقيع إلى صاحب الشهادة "
    "وتسجيل التسليم في نفس اليوم.\n"
)

#: A request's state as the notices say it (the web pages' words).
REQUEST_STATE_WORDS = {
    "submitted": ("demande soumise", "طلب مقدم"),
    "approved": ("demande approuvée", "طلب مقبول"),
    "personalised": ("jeton personnalisé", "جهاز توقيع مخصص"),
    "shipped": ("jeton expédié", "جهاز توقيع مرسل"),
    "delivered": ("jeton chez le contact", "جهاز التوقيع لدى المنسق"),
    "handed_over": ("jeton remis au titulaire", "جهاز التوقيع مسلم لصاحب الشهادة"),
    "active": ("certificat actif", "شهادة نشطة"),
    "rejected": ("demande rejetée", "طلب مرفوض"),
    "cancelled": ("demande annulée", "طلب ملغى"),
}


def seat_line(*, commune_fr: str, commune_ar: str, role: str, civility: str, name_fr: str,
              name_ar: str, request_status: str | None, blocked_since: object | None,
              can_sign: bool) -> str:
    """One seat of a campaign's list, in both languages: the commune, the title of the
    elected person (agreeing with their civility), the step their request reached (or
    re-elected), and whether the commune can sign."""
    title_fr, title_ar = title_for(role, civility, "fr"), title_for(role, civility, "ar")
    if request_status is None:
        step_fr = "réélue" if civility == "mrs" else "réélu"
        step_ar = "أعيد انتخابها" if civility == "mrs" else "أعيد انتخابه"
    else:
        step_fr, step_ar = REQUEST_STATE_WORDS.get(request_status,
                                                   (request_status, request_status))
    if blocked_since is not None:
        state = f"BLOQUÉE depuis le {blocked_since} / متوقفة منذ {blocked_since}"
    elif can_sign:
        state = "peut signer / يمكنها التوقيع"
    else:
        state = "pas encore de signataire / لا يوجد موقع بعد"
    return (f"- {commune_fr} / {commune_ar} — {title_fr} / {title_ar} : {name_fr} / "
            f"{name_ar}, {step_fr} / {step_ar} — {state}")


TEMPLATES["campaign.status"] = Template(
    "campaign.status", False,
    email_subject="Tawqi — {campaign} : état de {province_fr} / وضعية {province_ar}",
    email_body=_CAMPAIGN_STATUS_EMAIL)
