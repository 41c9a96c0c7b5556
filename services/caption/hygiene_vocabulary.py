"""The words caption hygiene knows: subject nouns by class, the adjectives BLIP puts on them, its openers and
artefacts. Kept apart from the rewrite rules in `hygiene` so the vocabulary can grow without touching the logic."""

from __future__ import annotations

import re

__all__ = [
    "ARTIFACT",
    "DETERMINERS",
    "EXPRESSION",
    "FOLLOW",
    "FOLLOWERS",
    "GROUPS",
    "HAIR",
    "HAIR_COLOUR",
    "HAIR_WORD",
    "IDENTITY",
    "ING_NOUNS",
    "KIND_ART",
    "KIND_PLAIN",
    "MOD",
    "NOT_COUNTABLE",
    "OPENER",
    "PEOPLE_AND_PETS",
    "PLURALS",
    "PLURAL_DETERMINERS",
    "RELATIVE",
    "STYLE",
    "EOW",
    "BOW",
    "alternation",
    "words",
]


BOW = r"(?<![\w'-])"  # beginning of a word
EOW = r"(?![\w-])"  # end of a word ("woman's" still ends "woman")


def alternation(items) -> str:
    """Regex alternation, longest first so "middle aged" wins over "middle"; spaces match any whitespace."""
    return "|".join(re.escape(i).replace(r"\ ", r"\s+") for i in sorted(set(items), key=len, reverse=True))


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Nouns of one subject class: (singular, plural). The class phrase's noun picks its group.
GROUPS = (
    (words("woman girl lady female gal"), words("women girls ladies females gals")),
    (words("man boy guy gentleman male dude"), words("men boys guys gentlemen males dudes")),
    (words("person individual human"), words("people persons individuals humans")),
    (words("child kid toddler"), words("children kids toddlers")),
    (words("dog puppy pup doggy doggo"), words("dogs puppies pups")),
    (words("cat kitten kitty"), words("cats kittens kitties")),
)
PEOPLE_AND_PETS = frozenset().union(*(s | p for s, p in GROUPS))
# Adjectives BLIP puts on a subject that are part of who it is: dropped, the embedding learns them.
IDENTITY = words(
    "young younger old older elderly aged teenage teen adult mature little small tiny beautiful pretty attractive "
    "gorgeous cute lovely handsome sexy hot stunning cool asian african indian japanese chinese korean thai "
    "caucasian white black latina latino hispanic european american russian slim skinny thin fat chubby tall "
    "short petite very really fluffy furry"
) | {"middle aged", "middle-aged", "african american", "good looking", "good-looking"}
EXPRESSION = words("smiling laughing grinning crying frowning")
HAIR_COLOUR = "long short dark light red blond blonde brown black white gray grey silver curly wavy straight pink"
HAIR = rf"(?:(?:{alternation(HAIR_COLOUR.split())})(?:-|\s+)?haired|blonde|blond|brunette|redheaded|redhead|ginger)"
HAIR_WORD = {"brunette": "brown", "redhead": "red", "redheaded": "red", "ginger": "red"}
MOD = rf"(?:{HAIR}|{alternation(IDENTITY | EXPRESSION)})"
# Words that may follow a subject noun used on its own ("a female sitting"), and that may follow a prepended
# class phrase without a comma ("sitting on a bench" -> "a woman sitting on a bench").
FOLLOWERS = words("with in on at near next under by from behind beside outside inside against wearing holding who and")
ING_NOUNS = words(
    "painting drawing building ceiling ring earring king wedding clothing evening morning spring string thing "
    "something nothing everything swing wing sling bedding railing awning"
)
FOLLOW = rf"(?=\s*(?:$|[,.;:!?]|(?:{alternation(FOLLOWERS | {'that', 'is', 'are', 'of'})}){EOW}|\w+ing{EOW}))"
DETERMINERS = words("a an the one this that")
PLURAL_DETERMINERS = words("the two three four some these those several many")
NOT_COUNTABLE = words("a an the one two three four five some many several this that these those his her their its my")
PLURALS = PEOPLE_AND_PETS - frozenset().union(*(s for s, _ in GROUPS))

# BLIP's artefacts: "arafed", "araffe", "arafe", "araffed", "arraffe", "arafeed", "araf", "arafly" (not "arafat").
ARTIFACT = re.compile(
    rf"{BOW}(?:(?P<det>a|an|the)\s+)?(?P<art>a+r+a+f+(?:e+d?|ly|y)?s?){EOW}(?:\s+(?P<next>[\w'-]+))?", re.I
)
# Phrases before the subject that say nothing about it ("there is", "a close-up of", "an image of"); the style
# words in them ("a black and white photo of") are kept at the end of the caption.
STYLE = (
    "black and white|black-and-white|monochrome|grayscale|greyscale|sepia|blurry|blurred|vintage|old|retro|"
    "professional|candid|polaroid|film|colou?r|colou?rful|high quality|low quality|hd|cropped|side|front|dark|bright"
).replace(" ", r"\s+")
KIND_PLAIN = r"close-up|close\s+up|closeup|photo|picture|image|photograph|pic|shot|view|snapshot|selfie|headshot"
KIND_ART = r"portrait|painting|drawing|sketch|illustration|cartoon|render|poster"
OPENER = re.compile(
    r"(?:(?:there|here)\s+(?:is|are)\s+|this\s+is\s+|it\s+is\s+|it's\s+)?"
    rf"(?:(?:a|an|the)\s+)?(?:(?P<style>(?:(?:{STYLE})\s+)*)(?P<kind>(?:{KIND_PLAIN}|{KIND_ART})"
    rf"(?:\s+(?:photo|picture|image|shot|view|portrait))?)\s+of\s+)?",
    re.I,
)
RELATIVE = re.compile(
    r"^\s+(?:that|who|which)\s+(?:(?P<be>is|are)\s+(?=(?:\w+ing|in|on|at|with|near|next|under|by|behind|beside)\b)"
    r"|(?P<has>has|have)\s+)",
    re.I,
)
