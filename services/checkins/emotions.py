"""The emotion vocabulary and the localisable string catalogue.

Words are stable ids grouped by a five-point pleasantness scale (1 very unpleasant … 5 very
pleasant), in the spirit of Reflect's "Feelings Monster". ``simple`` is a subset of ``full``
for younger students. Every string the check-in page shows is here, keyed, in English (``EN``,
``PLURALS``, the feeling words and their meanings); the other languages are the gettext
catalogues (``shared/locale``), where each key is the message context, so one English text
can be translated differently where it means something else ("Okay" the face, "Okay" the
word). ``catalogue(lang)`` is what the page's script receives in its JSON data block.
"""

from __future__ import annotations

from typing import Any

from babel.numbers import format_decimal

from shared.i18n.catalogues import plural_samples, translations
from shared.i18n.languages import ENGLISH, Language

BANDS: tuple[int, ...] = (1, 2, 3, 4, 5)

FULL: dict[int, tuple[str, ...]] = {
    1: ("devastated", "miserable", "hopeless", "furious", "terrified", "lonely",
        "overwhelmed", "depressed", "panicked", "ashamed"),
    2: ("sad", "worried", "stressed", "angry", "frustrated", "anxious", "tired",
        "disappointed", "nervous", "bored"),
    3: ("okay", "calm", "meh", "thoughtful", "unsure", "distracted", "curious",
        "sleepy", "surprised", "indifferent"),
    4: ("content", "relaxed", "hopeful", "focused", "grateful", "confident",
        "interested", "relieved", "cheerful", "motivated"),
    5: ("happy", "excited", "joyful", "proud", "energised", "thrilled", "inspired",
        "loved", "amazed", "fantastic"),
}  # fmt: skip

SIMPLE: dict[int, tuple[str, ...]] = {
    1: ("miserable", "furious"),
    2: ("sad", "worried"),
    3: ("okay", "calm"),
    4: ("relaxed", "cheerful"),
    5: ("happy", "excited"),
}

VOCABULARIES: dict[str, dict[int, tuple[str, ...]]] = {"full": FULL, "simple": SIMPLE}
PLEASANTNESS: dict[str, int] = {w: band for band, words in FULL.items() for w in words}

EN: dict[str, str] = {
    "app.title": "Attune check-ins",
    "app.loading": "Loading…",
    "app.relaunch": "Open Attune again from your course in the LMS to continue.",
    "app.no_token": "Open Attune from your course in the LMS.",
    "app.unreachable": "Attune could not be reached.",
    "app.signed_in_teacher": "Signed in as a teacher of this course.",
    "app.signed_in_student": "Signed in as a student of this course.",
    "lms.heading": "What your LMS shares with Attune",
    "lms.no_roster": (
        "Your LMS does not share this course's roster with Attune (the Names and Role "
        "Provisioning service is not enabled for it), so participation counts only the "
        "students who have opened Attune, not the whole class."
    ),
    "lms.no_names": (
        "Your LMS does not share people's names with Attune (its privacy setting), so named "
        "check-ins show each student's LMS identifier instead of a name."
    ),
    "lms.ask_admin": (
        "To change this, ask your LMS administrator to edit Attune's settings (in Canvas: "
        "Admin, Developer Keys, Attune: enable Names and Role Provisioning and a privacy "
        "level that includes names)."
    ),
    "band.1": "Very unpleasant",
    "band.2": "Unpleasant",
    "band.3": "Neutral",
    "band.4": "Pleasant",
    "band.5": "Very pleasant",
    "teacher.create": "Create a check-in",
    "teacher.question": "Question",
    "teacher.question_default": "How are you feeling today?",
    "teacher.vocabulary": "Feeling words",
    "teacher.vocabulary.full": "Full (about 50 words)",
    "teacher.vocabulary.simple": "Simple (10 words, for younger students)",
    "teacher.allow_note": "Let students add a note",
    "teacher.opens_at": "Opens",
    "teacher.closes_at": "Closes",
    "teacher.submit": "Create check-in",
    "teacher.created": "Check-in created.",
    "teacher.list": "Check-ins",
    "teacher.none": "No check-ins yet.",
    "teacher.close": "Close now",
    "teacher.delete": "Delete",
    "teacher.delete_confirm": "Delete this check-in and all its answers? This cannot be undone.",
    "teacher.view": "View results",
    "teacher.edit": "Edit",
    "teacher.save": "Save changes",
    "teacher.cancel": "Cancel",
    "teacher.edit_heading": "Edit check-in",
    "teacher.saved": "Check-in saved.",
    "teacher.recurrence": "Repeat",
    "teacher.recurrence.none": "Does not repeat",
    "teacher.recurrence.daily": "Every day",
    "teacher.recurrence.weekly": "Every week on",
    "teacher.recurrence.days": "Days of the week",
    "teacher.recurrence.weekly_on": "Every week on {days}",
    "weekday.1": "Monday",
    "weekday.2": "Tuesday",
    "weekday.3": "Wednesday",
    "weekday.4": "Thursday",
    "weekday.5": "Friday",
    "weekday.6": "Saturday",
    "weekday.7": "Sunday",
    "field.required": "Required.",
    "field.too_long": "Too long.",
    "field.invalid_choice": "Choose one of the options.",
    "field.invalid": "Not valid: for a weekly check-in, choose at least one day.",
    "field.timezone_required": "A time zone is needed (your browser did not give one).",
    "field.in_past": "This time has already passed.",
    "field.before_opens_at": "Must be after the opening time.",
    "field.too_far": "Too far after the opening time.",
    "field.immutable": "Cannot be changed.",
    "field.has_responses": "Cannot be changed once students have answered.",
    "field.not_allowed": "Not allowed.",
    "teacher.anonymous_badge": "Anonymous",
    "teacher.identified_badge": "Identified",
    "teacher.insights": "Insights",
    "teacher.trend": "Pleasantness over time",
    "teacher.no_trend": "No answers yet.",
    "teacher.attention": "May need a conversation",
    "teacher.attention_help": (
        "Students whose answers were in the lowest band at least twice in their last three "
        "identified check-ins."
    ),
    "teacher.attention_none": "Nobody right now.",
    "teacher.notes_anonymous": "Notes, in alphabetical order, without names or feelings",
    "teacher.results_none": (
        "No results: fewer than {group} students answered, and showing their answers would "
        "single them out."
    ),
    "teacher.results_left_out": (
        "Answers not included: {not_shown}. Fewer than {group} came after the last update, and "
        "showing them would single them out."
    ),
    "teacher.results_heading": "Responses: {question}",
    "teacher.recurrence_text": "Repeats: {rule}",
    "teacher.anonymity_fixed_text": "{kind}. Anonymity cannot be changed after creation.",
    "teacher.edit_label": "Edit: {question}",
    "teacher.who": "Who answered",
    "teacher.who_item": "{name}: {emotion} ({band})",
    "teacher.not_answered": "Not answered yet",
    "teacher.not_answered_help": (
        "Students on the course roster who have not answered this check-in."
    ),
    "teacher.not_answered_none": "Everyone on the roster has answered.",
    "teacher.unnamed": "Student {subject}",
    "teacher.average_participation": "Average participation: {percent}",
    "teacher.trend_scale": (
        "Average pleasantness per day, on a scale from 1 (very unpleasant) to 5 (very pleasant)."
    ),
    "teacher.students": "Students",
    "teacher.students_help": (
        "Each student's answers to the identified check-ins, oldest first. Anonymous check-ins "
        "never appear here."
    ),
    "teacher.students_none": "No identified check-in has opened yet.",
    "teacher.student_answers": "Answers of {name}",
    "teacher.no_answer": "no answer",
    "teacher.answer_cell": "{date}: {emotion}",
    "teacher.export": "Export",
    "teacher.export_help": (
        "Every check-in of this course: identified answers with names, anonymous check-ins as "
        "their released results only."
    ),
    "export.csv": "Download CSV",
    "export.json": "Download JSON",
    "export.failed": "The download did not work. Try again.",
    "nav.label": "Views",
    "nav.checkins": "Check-ins",
    "nav.insights": "Insights",
    "nav.students": "Students",
    "time.range": "{from} \u2013 {to}",
    "chart.emotions": "Emotions",
    "chart.pleasantness": "Pleasantness",
    "chart.count": "Answers",
    "chart.day": "Day",
    "chart.average": "Average pleasantness",
    "chart.face": "Feeling",
    "status.scheduled": "Scheduled",
    "status.open": "Open",
    "status.closed": "Closed",
    "student.open": "Open check-ins",
    "student.none_open": "No check-in is open right now.",
    "student.step": "Step {step} of 2",
    "student.faces": "How does it feel? Pick the face closest to how you feel.",
    "student.words": "Which word fits best?",
    "student.words_hint": "Tap a word to see what it means.",
    "student.chosen_face": "Your face: {face}",
    "student.back": "Back to the faces",
    "student.word_needed": "Choose a word first.",
    "student.note": "Anything to add? (optional)",
    "student.note_count": "{count} of {max} characters",
    "student.submit": "Send my answer",
    "student.next_identified": (
        "Your teacher will see your answer with your name. You can change it until the "
        "check-in closes."
    ),
    "student.next_anonymous": (
        "Your teacher sees your feeling only in results of at least {group} answers together. "
        "You can change it until the check-in closes."
    ),
    "student.change": "Change my answer",
    "student.saved": (
        "Thanks for checking in! Your answer is saved. You can change it until the check-in closes."
    ),
    "student.your_answer": "Your answer",
    "student.answer_text": "{emotion} ({face})",
    "student.history": "My check-ins",
    "student.no_history": "You have not answered any check-in yet.",
    "student.export_csv": "Download my answers (CSV)",
    "student.export_json": "Download my answers (JSON)",
    "student.this_checkin": "Your check-in",
    "student.not_open": "This check-in is not open right now.",
    "student.others": "Other open check-ins",
    "student.class": "How the class feels",
    "student.anonymous_note": (
        "This check-in is anonymous: your teacher sees feelings only as results of at least "
        "{group} answers together, never yours alone or with your name, and reads notes "
        "without names."
    ),
    "student.anonymous_note_hint": (
        "Your teacher reads notes without names: leave yours out if you want to stay anonymous."
    ),
    "face.1": "Really bad",
    "face.2": "Not so good",
    "face.3": "Okay",
    "face.4": "Good",
    "face.5": "Really good",
    "dl.heading": "Choose the check-in to add to your course",
    "dl.intro": "Pick an existing check-in, or create one: it is added to the course at once.",
    "dl.choose": "Add to course",
    "dl.none": "No check-ins yet: create one above.",
    "dl.sending": "Returning to your course…",
    "dl.continue": "Continue",
}
EMOTION_EN: dict[str, str] = {w: w.capitalize() for words in FULL.values() for w in words}
# One line each, in words a 12-year-old understands: shown on focus, hover and tap.
MEANING_EN: dict[str, str] = {
    "devastated": "So upset that everything feels broken.",
    "miserable": "Very unhappy, and it will not go away.",
    "hopeless": "Feeling like nothing will get better.",
    "furious": "Really, really angry.",
    "terrified": "Very, very scared.",
    "lonely": "Sad because you feel alone or left out.",
    "overwhelmed": "Like there is too much to handle at once.",
    "depressed": "Down and empty for a long time, even about things you like.",
    "panicked": "So scared all of a sudden that you cannot think straight.",
    "ashamed": "Feeling bad about yourself because of something you did.",
    "sad": "Unhappy, maybe like crying.",
    "worried": "Thinking something bad might happen.",
    "stressed": "Tense because there is a lot to do or think about.",
    "angry": "Mad about something that feels unfair or wrong.",
    "frustrated": "Annoyed because something is not working out.",
    "anxious": "Uneasy and jumpy inside, without always knowing why.",
    "tired": "Low on energy and wanting to rest.",
    "disappointed": "Let down because something did not go as you hoped.",
    "nervous": "Jittery about something that is coming up.",
    "bored": "Nothing feels interesting right now.",
    "okay": "Not great, not bad: just fine.",
    "calm": "Quiet and peaceful inside.",
    "meh": "Not much of anything either way.",
    "thoughtful": "Busy thinking things over.",
    "unsure": "Not certain what you feel or what to do.",
    "distracted": "Your mind keeps wandering off.",
    "curious": "Wanting to find out more about something.",
    "sleepy": "Ready for a nap.",
    "surprised": "Something you did not expect just happened.",
    "indifferent": "You do not mind either way.",
    "content": "Happy enough with how things are.",
    "relaxed": "Loose and easy, with nothing to worry about.",
    "hopeful": "Expecting something good to happen.",
    "focused": "Your attention is all on what you are doing.",
    "grateful": "Thankful for something or someone.",
    "confident": "Sure that you can do it.",
    "interested": "Wanting to know or do more.",
    "relieved": "Glad that a worry is over.",
    "cheerful": "In a bright, sunny mood.",
    "motivated": "Ready and wanting to get things done.",
    "happy": "Feeling good and glad.",
    "excited": "You can hardly wait for something.",
    "joyful": "Full of happiness.",
    "proud": "Pleased with something you did.",
    "energised": "Full of energy and ready to go.",
    "thrilled": "Super excited and happy.",
    "inspired": "Full of ideas and wanting to try them.",
    "loved": "Cared about by the people around you.",
    "amazed": "Wowed by something wonderful.",
    "fantastic": "Everything feels great.",
}

# Messages with a count: key -> (the placeholder that counts, singular, plural). A count the
# server knows (``group``: ATTUNE_CHECKIN_MIN_CLASS_SIZE) is resolved here; the others reach
# the script as one text per plural category of the language, chosen there with
# Intl.PluralRules.
PLURALS: dict[str, tuple[str, str, str]] = {
    "teacher.anonymous": (
        "group",
        "Anonymous: Attune shows no one, you included, who answered what; results appear only "
        "in groups of at least {group} answer",
        "Anonymous: Attune shows no one, you included, who answered what; results appear only "
        "in groups of at least {group} answers",
    ),
    "student.class_hidden": (
        "group",
        "The class picture appears once {group} student has answered, and changes only when "
        "{group} more has.",
        "The class picture appears once {group} students have answered, and changes only when "
        "{group} more have.",
    ),
    "teacher.results_waiting": (
        "next",
        "Results appear once {group} students have answered: {next} more to go. Until then "
        "only the number of answers shows, so that no one's answer stands alone.",
        "Results appear once {group} students have answered: {next} more to go. Until then "
        "only the number of answers shows, so that no one's answer stands alone.",
    ),
    "teacher.results_cover": (
        "answers",
        "These results cover {answers} answer. They update when {next} more students answer: "
        "always in groups of at least {group}, so that no one's answer stands alone.",
        "These results cover {answers} answers. They update when {next} more students answer: "
        "always in groups of at least {group}, so that no one's answer stands alone.",
    ),
    "teacher.results_final": (
        "answers",
        "These results cover {answers} answer.",
        "These results cover {answers} answers.",
    ),
    "teacher.participation_text": (
        "learners",
        "Participation: {answered} of {learners} student answered",
        "Participation: {answered} of {learners} students answered",
    ),
    "teacher.attention_item": (
        "of",
        "{name}: {low} of their last {of} answer very unpleasant",
        "{name}: {low} of their last {of} answers very unpleasant",
    ),
    "student.show_others": (
        "count",
        "Show the other open check-in ({count})",
        "Show the other open check-ins ({count})",
    ),
}

# Everything keyed, in English: what the extraction (shared/i18n/extract.py) hands to
# translators, with a note for each kind of string.
SOURCE: dict[str, str] = {
    **EN,
    **{f"emotion.{k}": v for k, v in EMOTION_EN.items()},
    **{f"meaning.{k}": v for k, v in MEANING_EN.items()},
}
BAND_WORDS = {
    1: "very unpleasant",
    2: "unpleasant",
    3: "neutral",
    4: "pleasant",
    5: "very pleasant",
}


def translator_note(key: str) -> str | None:
    """What a translator needs to know about one string (shown in the catalogues)."""
    kind, _, name = key.partition(".")
    if kind == "emotion":
        band = PLEASANTNESS[name]
        simple = name in SIMPLE[band]
        return (
            f"A feeling word, band {band} of 5 ({BAND_WORDS[band]}). Write the word a child "
            "of about 12 in your language uses for this feeling (not a word-for-word "
            "translation), as a label (capitalised as your language does), and keep it in "
            f"this band.{' Also in the simple vocabulary for younger children.' if simple else ''} "
            "Every word of one band must differ."
        )
    if kind == "meaning":
        return (
            f"One line (at most about 70 characters, ending with a full stop) explaining the "
            f"feeling word '{EMOTION_EN[name]}' to a 12-year-old, in everyday words."
        )
    if kind == "face":
        return (
            f"Label of face {name} of 5 (1 the unhappiest, 5 the happiest), what a child "
            "would say: short, spoken words."
        )
    if kind == "band":
        return f"Pleasantness band {name} of 5, as teachers read it in charts."
    if kind == "weekday":
        return "Day of the week (1 is Monday), as a check-box label."
    if kind == "lms":
        note = (
            "Shown to teachers only, when their LMS does not share the course roster or "
            "people's names with Attune."
        )
        if "Names and Role Provisioning" in SOURCE[key]:
            note += " Keep 'Names and Role Provisioning' in English (the LTI service's name)."
        if "Developer Keys" in SOURCE[key]:
            note += " Name Canvas's menus as Canvas shows them in your language."
        return note
    if key in PLURALS or "{" in SOURCE.get(key, ""):
        return "Keep every {placeholder} as it is (names in braces are filled in by Attune)."
    return None


def _number(value: int, lang: Language) -> str:
    return format_decimal(value, locale=lang.babel, numbering_system="default")


def catalogue(lang: Language = ENGLISH, *, group: int | None = None) -> dict[str, Any]:
    """The page's strings in ``lang``, by key; ``{group}`` is filled in (the results group
    size, ATTUNE_CHECKIN_MIN_CLASS_SIZE) when given. A message whose count the script knows is
    ``{"count": placeholder, "forms": {CLDR category: text}}``."""
    tr = translations(lang)
    strings: dict[str, Any] = {key: tr.pgettext(key, text) for key, text in SOURCE.items()}
    for key, (count, singular, plural) in PLURALS.items():
        if count == "group" and group is not None:
            strings[key] = tr.npgettext(key, singular, plural, group)
        else:
            strings[key] = {
                "count": count,
                "forms": {
                    category: tr.npgettext(key, singular, plural, n)
                    for category, n in plural_samples(lang).items()
                },
            }
    if group is None:
        return strings
    number = _number(group, lang)
    return {k: _fill_group(v, number) for k, v in strings.items()}


def _fill_group(value: Any, number: str) -> Any:
    if isinstance(value, str):
        return value.replace("{group}", number)
    return {**value, "forms": {c: t.replace("{group}", number) for c, t in value["forms"].items()}}


def vocabulary_payload(lang: Language = ENGLISH) -> dict[str, Any]:
    """Both vocabularies with their labels, as the page's script consumes them."""
    strings = catalogue(lang)
    return {
        name: [
            {
                "band": band,
                "label": strings[f"band.{band}"],
                "face": strings[f"face.{band}"],
                "words": [
                    {"id": w, "label": strings[f"emotion.{w}"], "meaning": strings[f"meaning.{w}"]}
                    for w in words[band]
                ],
            }
            for band in BANDS
        ]
        for name, words in VOCABULARIES.items()
    }


def is_word(vocabulary: str, emotion: str) -> bool:
    return any(emotion in words for words in VOCABULARIES[vocabulary].values())
