"""The words of queries and of the classification, read the same way.

Tokens are lower-cased words with accents folded ('Sjögren' as 'sjogren') and possessives dropped
('Crohn's'), without stop words; eponyms the alphabetic index lacks in the classification's words
('Lisfranc' as 'tarsometatarsal joint dislocation'), common clinical abbreviations spelled out
('COPD', 'HTN', 'afib'), synonyms the classification uses side by side read as one ('renal' as
'kidney', 'extremity' as 'limb', 'distal' as 'lower': 'distal radius' is the 'lower end of
radius'), 'ii'..'iv' read as digits, spinal levels written in full with their region ('C5-6' ->
'c5 cervical c6'), reduced by a small suffix normaliser (`stem`: 'diabetes' and 'diabetic' ->
'diabet', 'fractures' and 'fracture' -> 'fractur', 'tics' -> 'tic')."""

from __future__ import annotations

import re
import unicodedata

STOPWORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or other than that the "
    "their then there these this to was were which with".split()
)
WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = (("ically", ""), ("ical", ""), ("ies", "y"), ("es", ""), ("ic", ""), ("s", ""), ("e", ""))
_POSSESSIVE = re.compile(r"['’]s\b")
ABBREVIATIONS = {
    "htn": "hypertension", "copd": "chronic obstructive pulmonary disease",
    "gerd": "gastroesophageal reflux disease", "ckd": "chronic kidney disease", "afib": "atrial fibrillation",
    "chf": "congestive heart failure", "cad": "coronary artery disease", "dm": "diabetes mellitus",
    "t2dm": "type 2 diabetes mellitus", "t1dm": "type 1 diabetes mellitus", "dm2": "type 2 diabetes mellitus",
    "dm1": "type 1 diabetes mellitus", "uti": "urinary tract infection", "luts": "lower urinary tract symptoms",
    "hx": "history",
    "uri": "upper respiratory infection", "dvt": "deep vein thrombosis", "osa": "obstructive sleep apnea",
    "bph": "benign prostatic hyperplasia", "oa": "osteoarthritis", "djd": "degenerative joint disease",
    "tia": "transient ischemic attack", "mi": "myocardial infarction", "hld": "hyperlipidemia",
    "ibs": "irritable bowel syndrome", "ptsd": "post-traumatic stress disorder",
    "adhd": "attention-deficit hyperactivity disorder", "acl": "anterior cruciate ligament",
    "pcl": "posterior cruciate ligament", "mcl": "medial collateral ligament", "lcl": "lateral collateral ligament",
    "dcis": "ductal carcinoma in situ", "hiv": "human immunodeficiency virus", "uc": "ulcerative colitis",
    "ra": "rheumatoid arthritis", "ms": "multiple sclerosis",
    "ii": "2", "iii": "3", "iv": "4",
}
# Eponyms clinicians write and the alphabetic index does not list, in the words the
# classification uses for the same injury or disorder.
EPONYMS = {
    "lisfranc": "tarsometatarsal joint dislocation",
    "chopart": "tarsal joint dislocation",
    "boxer fracture": "fracture neck fifth metacarpal",
    "jones fracture": "fracture fifth metatarsal",
    "bankart": "glenoid labrum lesion",
    "jefferson fracture": "burst fracture first cervical vertebra",
    "hangman fracture": "traumatic spondylolisthesis second cervical vertebra",
    "segond fracture": "fracture lateral condyle tibia",
    "tillaux fracture": "salter harris type 3 physeal fracture lower end tibia",
    "essex lopresti": "fracture head radius",
    "jumper knee": "patellar tendinitis",
    "runner knee": "patellofemoral disorder",
    "gamekeeper thumb": "sprain metacarpophalangeal thumb",
    "skier thumb": "sprain metacarpophalangeal thumb",
}
_EPONYM = re.compile(r"\b(?:" + "|".join(r"[^a-z0-9]+".join(key.split()) for key in EPONYMS) + r")\b")
SYNONYMS = {
    "renal": "kidney", "hepatic": "liver", "cardiac": "heart",
    "extremity": "limb", "extremities": "limb", "proximal": "upper", "distal": "lower",
    "exam": "examination",
}
REGIONS = {"c": "cervical", "t": "thoracic", "l": "lumbar"}
# 'both' as the classification's 'bilateral' ('both knees', 'both eyes'), not in 'both X and Y'.
_BOTH_SIDES = re.compile(r"\bboth\b(?!(?:\s+[a-z0-9]+){1,3}?\s+and\b)")
_LEVEL = re.compile(r"[ctl]\d{1,2}")
_LEVELS = re.compile(r"\b([ctls])(\d{1,2}) ?- ?(\d{1,2})\b")


# How a condition is doing, which no code says ('Hypertension, well controlled', 'Asthma - stable'):
# phrases that never name a condition, anywhere, and a status word that ends the text after a
# comma, dash, colon or parenthesis ('stable angina' keeps its word). Not 'poorly controlled' or
# 'uncontrolled', which the index codes for diabetes (with hyperglycemia).
_STATUS_PHRASE = re.compile(
    r"\b(?:(?:well|adequately|optimally|reasonably|fairly|nicely)[- ]controlled"
    r"|under (?:good |better |excellent |adequate |fair )?control"
    r"|doing (?:well|better|fine|ok(?:ay)?)|at (?:goal|baseline)"
    r"|on (?:current|present) (?:medications?|regimen|therapy|treatment))\b",
    re.IGNORECASE,
)
_STATUS_END = re.compile(
    r"(?:[,;:(]|\s[-–—]+)\s*(?:(?:currently|clinically|now|overall|remains?|is)\s+)*"
    r"(?:stable|stabilized|improved|improving|unchanged|controlled)\W*$",
    re.IGNORECASE,
)


def without_status(text: str) -> str:
    """`text` without the status of its condition ('Hypertension, well controlled' ->
    'Hypertension'); `text` itself when nothing else is left."""
    kept = _STATUS_END.sub("", " ".join(_STATUS_PHRASE.sub(" ", text).split()).rstrip(" ,;:-.")).rstrip(" ,;:-")
    return kept if WORD.search(kept.lower()) else text


def fold(text: str) -> str:
    """Lower case without accents: 'Sjögren' -> 'sjogren'."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def stem(word: str) -> str:
    """A small suffix normaliser: plural and adjective endings, and a final 'e'."""
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if len(word) == 4:
        return word.removesuffix("s")
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: len(word) - len(suffix)] + replacement
    return word


def spelled_out(text: str) -> str:
    """Folded text with possessives dropped, eponyms in the classification's words and spinal
    level ranges written in full ('Lisfranc's' -> 'tarsometatarsal joint dislocation', 'C5-6' -> 'c5-c6')."""
    text = _EPONYM.sub(lambda match: EPONYMS[" ".join(WORD.findall(match.group()))], _POSSESSIVE.sub("", fold(text)))
    return _LEVELS.sub(r"\1\2-\1\3", text)


def both_sides(text: str) -> str:
    """Lower-case `text` with 'both' read as 'bilateral' where it names two sides (`_BOTH_SIDES`)."""
    return _BOTH_SIDES.sub("bilateral", text)


def tokenize(text: str) -> list[str]:
    """Stemmed words of `spelled_out` text without stop words; common clinical abbreviations
    spelled out, synonyms the classification uses both of read as one ('renal' as 'kidney', 'both
    knees' as 'bilateral knees') and a spinal level followed by its region ('c5' 'cervical')."""
    words = []
    for word in WORD.findall(both_sides(spelled_out(text))):
        word = SYNONYMS.get(word, word)
        words.extend(WORD.findall(ABBREVIATIONS[word]) if word in ABBREVIATIONS else (word,))
        region = REGIONS.get(word[0]) if _LEVEL.fullmatch(word) else None
        if region and region not in words:
            words.append(region)
    return [stem(word) for word in words if word not in STOPWORDS]


def spelling_variants(word: str) -> list[str]:
    """Words one deletion, transposition, substitution or insertion away, in a fixed order."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    variants = [a + b[1:] for a, b in splits if b]
    variants += [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    variants += [a + c + b[1:] for a, b in splits if b for c in letters if c != b[0]]
    variants += [a + c + b for a, b in splits for c in letters]
    return list(dict.fromkeys(variants))
