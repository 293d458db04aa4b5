"""The emotion vocabulary and the localisable string catalogue.

Words are stable ids grouped by a five-point pleasantness scale (1 very unpleasant … 5 very
pleasant), in the spirit of Reflect's "Feelings Monster". ``simple`` is a subset of ``full``
for younger students. Every string a person reads lives in ``CATALOGUES`` (one dict per
locale); English is complete and is the fallback for any missing key.
"""

from __future__ import annotations

from typing import Any

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
    "teacher.anonymous": (
        "Anonymous: Attune shows no one, you included, who answered what; results appear only "
        "in groups of at least {group} answers"
    ),
    "teacher.allow_note": "Let students add a note",
    "teacher.opens_at": "Opens",
    "teacher.closes_at": "Closes",
    "teacher.submit": "Create check-in",
    "teacher.created": "Check-in created.",
    "teacher.list": "Check-ins",
    "teacher.none": "No check-ins yet.",
    "teacher.responses": "Responses",
    "teacher.participation": "Participation",
    "teacher.of_learners": "{answered} of {learners} students answered",
    "teacher.close": "Close now",
    "teacher.delete": "Delete",
    "teacher.delete_confirm": "Delete this check-in and all its answers? This cannot be undone.",
    "teacher.view": "View results",
    "teacher.edit": "Edit",
    "teacher.save": "Save changes",
    "teacher.cancel": "Cancel",
    "teacher.edit_heading": "Edit check-in",
    "teacher.saved": "Check-in saved.",
    "teacher.anonymity_fixed": "Anonymity cannot be changed after creation.",
    "teacher.recurrence": "Repeat",
    "teacher.recurrence.none": "Does not repeat",
    "teacher.recurrence.daily": "Every day",
    "teacher.recurrence.weekly": "Every week on",
    "teacher.recurrence.days": "Days of the week",
    "teacher.recurrence_badge": "Repeats",
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
    "teacher.notes": "Notes",
    "teacher.notes_anonymous": "Notes, in alphabetical order, without names or feelings",
    "teacher.results_waiting": (
        "Results appear once {group} students have answered: {next} more to go. Until then "
        "only the number of answers shows, so that no one's answer stands alone."
    ),
    "teacher.results_cover": (
        "These results cover {answers} answers. They update when {next} more students answer: "
        "always in groups of at least {group}, so that no one's answer stands alone."
    ),
    "teacher.results_final": "These results cover {answers} answers.",
    "teacher.results_none": (
        "No results: fewer than {group} students answered, and showing their answers would "
        "single them out."
    ),
    "teacher.results_left_out": (
        "Answers not included: {not_shown}. Fewer than {group} came after the last update, and "
        "showing them would single them out."
    ),
    "teacher.who": "Who answered",
    "chart.emotions": "Emotions",
    "chart.pleasantness": "Pleasantness",
    "chart.count": "Answers",
    "chart.day": "Day",
    "chart.average": "Average pleasantness",
    "status.scheduled": "Scheduled",
    "status.open": "Open",
    "status.closed": "Closed",
    "student.open": "Open check-ins",
    "student.none_open": "No check-in is open right now.",
    "student.choose": "Choose the word closest to how you feel",
    "student.note": "Anything to add? (optional)",
    "student.submit": "Send my answer",
    "student.change": "Change my answer",
    "student.saved": "Thanks, your answer was saved. You can change it until the check-in closes.",
    "student.your_answer": "Your answer",
    "student.history": "My check-ins",
    "student.no_history": "You have not answered any check-in yet.",
    "student.class": "How the class feels",
    "student.class_hidden": (
        "The class picture appears once {group} students have answered, and changes only when "
        "{group} more have."
    ),
    "student.anonymous_note": (
        "This check-in is anonymous: your teacher sees feelings only as results of at least "
        "{group} answers together, never yours alone or with your name, and reads notes "
        "without names."
    ),
    "student.anonymous_note_hint": (
        "Your teacher reads notes without names: leave yours out if you want to stay anonymous."
    ),
    "dl.heading": "Choose the check-in to add to your course",
    "dl.intro": "Pick an existing check-in, or create one: it is added to the course at once.",
    "dl.choose": "Add to course",
    "dl.none": "No check-ins yet: create one above.",
    "dl.sending": "Returning to your course…",
    "dl.continue": "Continue",
}
EMOTION_EN: dict[str, str] = {w: w.capitalize() for words in FULL.values() for w in words}

CATALOGUES: dict[str, dict[str, str]] = {
    "en": {**EN, **{f"emotion.{k}": v for k, v in EMOTION_EN.items()}},
}
DEFAULT_LOCALE = "en"


def catalogue(locale: str = DEFAULT_LOCALE, *, group: int | None = None) -> dict[str, str]:
    """Strings for ``locale`` (a language tag), English filling any gap; ``{group}`` is the
    results group size (ATTUNE_CHECKIN_MIN_CLASS_SIZE) when given."""
    base = CATALOGUES[DEFAULT_LOCALE]
    chosen = CATALOGUES.get(locale.split("-")[0].lower(), base)
    strings = {**base, **chosen}
    if group is None:
        return strings
    return {k: v.replace("{group}", str(group)) for k, v in strings.items()}


def vocabulary_payload(locale: str = DEFAULT_LOCALE) -> dict[str, Any]:
    """Both vocabularies with their labels, as the page's script consumes them."""
    strings = catalogue(locale)
    return {
        name: [
            {
                "band": band,
                "label": strings[f"band.{band}"],
                "words": [{"id": w, "label": strings[f"emotion.{w}"]} for w in words[band]],
            }
            for band in BANDS
        ]
        for name, words in VOCABULARIES.items()
    }


def is_word(vocabulary: str, emotion: str) -> bool:
    return any(emotion in words for words in VOCABULARIES[vocabulary].values())
