"""Pure-Python equivalent of coco-caption's PTB tokenization.

The reference is the Java ``edu.stanford.nlp.process.PTBTokenizer`` of Stanford CoreNLP 3.4.1 run with
``-preserveLines -lowerCase`` (as pycocoevalcap does), followed by pycocoevalcap's punctuation drop list.
The Java class is a JFlex scanner: at every position it takes the longest match over all of its rules
(trailing context included in the length), the earliest rule winning ties, and the rule's action decides
the token text. ``_Lexer`` re-implements that scanner rule by rule for the default options in force
there (PTB3 escaping, latex quotes, split assimilations, untokenizable characters deleted).

Speed comes from a fast path: a space-separated chunk made only of ASCII letters can only ever be one
token equal to itself (or one of the split assimilations), so only the remaining chunks go through the
rule engine.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["PUNCTUATIONS", "JAVA_LINE_BREAKS", "tokenize", "tokenize_line", "PTBTokenizer"]

logger = logging.getLogger(__name__)

# pycocoevalcap drops these tokens after the Java tokenizer (exact, case-sensitive comparison).
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# Characters the Java lexer treats as line ends. pycocoevalcap only replaces "\n" inside a caption, so any
# of these makes Java emit an extra line and silently shift every later caption; we treat them as spaces.
JAVA_LINE_BREAKS = "\r\x0b\x0c\u2028\u2029"
_LINE_BREAK_RE = re.compile("[\n" + JAVA_LINE_BREAKS + "]")


# --------------------------------------------------------------------------------------------------
# Character classes of the JFlex specification.
# --------------------------------------------------------------------------------------------------

def _ranges(pred: Callable[[str], bool]) -> str:
    """A regex character-class body holding every BMP character (surrogates excluded) satisfying ``pred``."""
    flags = [not (0xD800 <= cp <= 0xDFFF) and pred(chr(cp)) for cp in range(0x10000)] + [False]
    out = []
    start = None
    for cp, ok in enumerate(flags):
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append(f"\\u{start:04x}" if start == cp - 1 else f"\\u{start:04x}-\\u{cp - 1:04x}")
            start = None
    return "".join(out)


_LETTER_EXTRA = ("\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F\u0370-\u037D\u0384\u0385"
                 "\u03CF\u03F6\u03FC-\u03FF\u0483-\u0487\u04CF\u04F6-\u04FF\u0510-\u0525\u055A-\u055F\u0591-\u05BD"
                 "\u05BF\u05C1\u05C2\u05C4\u05C5\u05C7\u0615-\u061A\u063B-\u063F\u064B-\u065E\u0670\u06D6-\u06EF"
                 "\u06FA-\u06FF\u070F\u0711\u0730-\u074F\u0750-\u077F\u07A6-\u07B1\u07CA-\u07F5\u07FA\u0900-\u0903"
                 "\u093C\u093E-\u094E\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09BC-\u09C4\u09C7\u09C8\u09CB-\u09CD"
                 "\u09D7\u09E2\u09E3\u0A01-\u0A03\u0A3C\u0A3E-\u0A4F\u0A81-\u0A83\u0ABC-\u0ACF\u0B82\u0BBE-\u0BC2"
                 "\u0BC6-\u0BC8\u0BCA-\u0BCD\u0C01-\u0C03\u0C3E-\u0C56\u0D3E-\u0D44\u0D46-\u0D48\u0E30-\u0E3A"
                 "\u0E47-\u0E4E\u0EB1-\u0EBC\u0EC8-\u0ECD")

_ULETTER = _ranges(str.isalpha)  # JFlex [:letter:] (general category L*)
_UDIGIT = _ranges(str.isdecimal)  # JFlex [:digit:] (general category Nd)
_UUPPER = _ranges(str.isupper)  # JFlex [:uppercase:]

_CASELESS_SKIP = re.compile(r"\\u[0-9a-fA-F]{4}|\\.|\[(?:\\.|[^\]\\])*\]|\(\?[:=!]|.", re.S)


def _ci(pattern: str) -> str:
    """Make ASCII letters outside character classes caseless, as JFlex's %caseless does."""
    out = []
    for m in _CASELESS_SKIP.finditer(pattern):
        s = m.group()
        if len(s) == 1 and s.isascii() and s.isalpha():
            out.append(f"[{s.lower()}{s.upper()}]")
        else:
            out.append(s)
    return "".join(out)


_M: dict[str, str] = {}
_M["SGMLT"] = r"[A-Za-z][A-Za-z0-9_:\.\-]*"
_M["SGML"] = (r"<(?:[!?][A-Za-z\-][^>\r\n]*|{SGMLT}(?:[ ]+(?:{SGMLT}[ ]*=[ ]*(?:'[^']*'|\"[^\"]*\")|{SGMLT}))*[ ]*/?"
              r"|/{SGMLT})[ ]*>").replace("{SGMLT}", _M["SGMLT"])
_M["SPACE"] = "[ \t\u00A0\u2000-\u200A\u3000]"
_M["NEWLINE"] = "(?:\r\n|[\r\n\u2028\u2029\u000B\u000C\u0085])"
_M["SPACENL"] = f"(?:{_M['SPACE']}|{_M['NEWLINE']})"
_M["DIGITC"] = _UDIGIT + "\u07C0-\u07C9"
_M["DIGIT"] = f"[{_M['DIGITC']}]"
_M["LETTERC"] = _ULETTER + _LETTER_EXTRA
_M["SPLET"] = _ci("&[aeiouAEIOU](?:acute|grave|uml);")
_M["LETTER"] = f"(?:[{_M['LETTERC']}]|{_M['SPLET']})"
_M["LD"] = f"(?:[{_M['LETTERC']}{_M['DIGITC']}]|{_M['SPLET']})"
_M["ULD"] = f"[{_ULETTER}{_UDIGIT}]"  # [:letter:]|[:digit:] without the extras
_M["APOS"] = "(?:['\u0092\u2019]|" + _ci("&apos;") + ")"
_M["APOSETC"] = f"(?:{_M['APOS']}|[`\u0091\u2018\u201B])"
_M["ACRO2"] = (r"(?:[A-Za-z](?:\.[A-Za-z])+|" + _ci(r"(?:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R)")
               + ")")
_M["ACRO"] = (r"(?:" + _ci(r"(?:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R)")
              + r"|[A-Za-z](?:\.[A-Za-z])*)")


def _x(pattern: str) -> str:
    """Expand ``{NAME}`` macro references."""
    return re.sub(r"\{([A-Z][A-Z0-9_]*)\}", lambda m: _M[m.group(1)], pattern)


_M["WORD"] = _x(r"{LETTER}{LD}*(?:[.!?]{LETTER}{LD}*)*")
_M["REDAUX"] = _x("{APOS}" + _ci("(?:[msdMSD]|re|ve|ll)"))
_M["SWORD"] = "[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
_M["SREDAUX"] = _x(_ci("n") + "{APOSETC}" + _ci("t"))
_M["NUM"] = _x(r"(?:{DIGIT}*(?:[.:,\u00AD\u066B\u066C]{DIGIT}+)+|{DIGIT}+)")
_M["HYPHEN"] = "[-_\u058A\u2010\u2011]"
_M["THINGP"] = _x("(?:[dDoOlL]{APOSETC}{ULD})?{ULD}+")
_M["THING"] = _x("{THINGP}(?:{HYPHEN}{THINGP})*")
_M["THINGA"] = "[A-Z]+(?:(?:[+&]|" + _ci("&amp;") + ")[A-Z]+)+"
_M["HTHING"] = _x(r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:{ACRO2}\.|[A-Za-z0-9\u00AD]+))+")
_M["INSENTP"] = "[,;:\u3001]"
_M["ABMONTH"] = "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec"
_M["ABDAYS"] = "Mon|Tues|Tue|Wed|Thurs|Thu|Fri"
_M["ABSTATE"] = ("Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|Mich|Minn|"
                 "[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo")
_M["ABCOMP"] = "Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys"
_M["ABNUM"] = "tel|est|ext|sq"
_M["ABPTIT"] = r"Jr|Sr|Bros|(?:Ed|Ph)\.D|Blvd|Rd|Esq"
_M["ABBREV1"] = _ci(_x(r"(?:{ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\."))
_M["ABTITLE"] = ("Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|"
                 "Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|"
                 "Mlle|Mme|Msgr|Sfc")
_M["ABCOMP2"] = "Invt|Elec|Natl|M[ft]g|Dept"
_M["ABBREV4"] = _ci(_x(r"(?:{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph|{ABCOMP2})")) + "|" + _M["ACRO"]
_M["ABBREV3"] = _ci(r"(?:ca|figs?|prop|nos?|art|bldg|pp|op)\.")
_M["FILENAME_EXT"] = ("bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|pdf|php|"
                      "pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip")
_M["DIGITS4"] = _x("{DIGIT}{1,4}")
_M["LDOTS"] = "(?:\\.{3,5}|(?:\\.[ \u00A0]){2,4}\\.|[\u0085\u2026])"
_M["QUOTES"] = _x("(?:''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A"
                  "\u00AB\u00BB]{1,2}|{APOS})")
_M["SMILEY"] = r"[<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]"
_M["MISCSYMBOL"] = ("[+%&~\\^|\\\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7"
                    "\u0387\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E"
                    "\u066A\u066D\u0703-\u070D\u07F6\u07F7\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023"
                    "\u2030-\u2038\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF"
                    "\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]")

_ACRONYM_NEXT = _ci("(?:[A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[E]arlier|[H]e|[H]er|"
                    "[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\\.|[M]s\\.|[N]ow|[O]nce|[O]ne|[O]ther|"
                    "[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir|[T]hen|[T]here|[T]hese|[T]hey|"
                    "[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou)")


# --------------------------------------------------------------------------------------------------
# Token actions (what the Java rule returns for the matched text).
# --------------------------------------------------------------------------------------------------

def _latex_quotes(tok: str, probably_left: bool) -> str:
    if probably_left:
        tok = re.sub("&apos;|'", "`", tok)
        tok = re.sub("\"|&quot;", "``", tok)
    else:
        tok = re.sub("&apos;|'", "'", tok)
        tok = re.sub("\"|&quot;", "''", tok)
    tok = re.sub("[\u0091\u2018\u201B\u2039]", "`", tok)
    tok = re.sub("[\u0092\u2019\u203A]", "'", tok)
    tok = re.sub("[\u0093\u201C\u00AB]", "``", tok)
    return re.sub("[\u0094\u201D\u00BB]", "''", tok)


def _amp(tok: str) -> str:
    return re.sub("(?i:&amp;)", "&", tok)


def _soft(tok: str) -> str:
    if "\u00AD" not in tok:
        return tok
    return tok.replace("\u00AD", "") or "-"


def _currency(tok: str) -> str:
    return re.sub("[\u0080\u00A4\u20A0\u20AC]", "$", tok.replace("\u00A2", "cents").replace("\u00A3", "#"))


def _fraction(tok: str) -> str:
    for a, b in (("\u00BC", "1/4"), ("\u00BD", "1/2"), ("\u00BE", "3/4"), ("\u2153", "1/3"), ("\u2154", "2/3")):
        tok = tok.replace(a, b)
    return tok


def _nbsp(tok: str) -> str:
    return tok.replace(" ", "\u00A0")


def _parens(tok: str) -> str:
    return tok.replace("(", "-LRB-").replace(")", "-RRB-")


def _hyphens(tok: str) -> str:
    return "--" if 3 <= len(tok) <= 4 else tok


def _ident(tok: str) -> str:
    return tok


class _Rule:
    """One JFlex rule: its regex (trailing context in a lookahead group "c") and what it returns.

    Kinds: "get" (token = fn(text)), "skip" (no token), "push:N" (token = text minus its last N characters,
    which are lexed again), "abbrev" (token = text, then its final period is lexed again), "acronym" (the
    ACRONYM rule), "url"/"email" (as "get", tried only when the text can hold one), "newline",
    "untokenizable" (deleted, as the Java default "firstDelete").
    """

    __slots__ = ("prio", "pattern", "_regex", "has_ctx", "kind", "fn")

    def __init__(self, prio: int, main: str, ctx: str, kind: str, fn: Callable[[str], str]):
        self.prio = prio
        self.pattern = f"(?:{main})" + (f"(?=(?P<c>{ctx}))" if ctx else "")
        self._regex: re.Pattern | None = None
        self.has_ctx = bool(ctx)
        self.kind = kind
        self.fn = fn

    @property
    def regex(self) -> re.Pattern:
        """Compiled on first use: most rules never fire on ordinary captions, and the Unicode classes are big."""
        if self._regex is None:
            self._regex = re.compile(self.pattern, re.S)
        return self._regex


def _build_rules() -> list[tuple[_Rule, re.Pattern]]:
    """The JFlex rules in file order, each with a regex for the characters it can start with."""
    x = _x
    L = f"[{_M['LETTERC']}&]"  # characters a {LETTER} can start with
    LD = f"[{_M['LETTERC']}{_M['DIGITC']}&]"
    specs: list[tuple[str, str, str, str, Callable[[str], str]]] = [
        # (main, trailing context, first-char class, kind, action)
        (_ci("c[+][+]"), "", "[cC]", "get", _ident),
        (_ci("(?:c|f)#"), "", "[cCfF]", "get", _ident),
        (_ci("cannot"), "", "[cC]", "push:3", _ident),
        (_ci("'twas"), "", "'", "push:3", _ident),
        (_ci("'tis"), "", "'", "push:2", _ident),
        (_ci("gonna|gotta|lemme|gimme|wanna"), "", "[gGlLwW]", "push:2", _ident),
        (_M["SGML"], "", "<", "get", _nbsp),
        (_ci("&(?:MD|mdash|ndash);") + "|[\u0096\u0097\u2013\u2014\u2015]", "", "[&\u0096\u0097\u2013\u2014\u2015]",
         "get", lambda t: "--"),
        (_ci("&amp;"), "", "&", "get", _amp),
        (_ci("&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"), "", "&", "get", _ident),
        (x("{WORD}"), x("{REDAUX}"), L, "get", _soft),
        (x("{SWORD}"), x("{SREDAUX}"), "[A-Za-z\u00AD]", "get", _soft),
        (x("{WORD}"), "", L, "get", _soft),
        # APOWORD, one alternative per entry so that the longest alternative wins
        (x("{APOS}") + _ci("n") + x("{APOS}?"), "", "['\u0092\u2019&]", "get", _ident),
        (x("[lLdDjJ]{APOS}"), "", "[lLdDjJ]", "get", _ident),
        (_ci("Dunkin") + x("{APOS}"), "", "[dD]", "get", _ident),
        (_ci("somethin") + x("{APOS}"), "", "[sS]", "get", _ident),
        (_ci("ol") + x("{APOS}"), "", "[oO]", "get", _ident),
        (x("{APOS}") + _ci("em"), "", "['\u0092\u2019&]", "get", _ident),
        (x(f"[A-HJ-XZn]{{APOSETC}}[{_ULETTER}]{{2}}[{_ULETTER}]*"), "", "[A-HJ-XZn]", "get", _ident),
        (x("{APOS}[2-9]0") + _ci("s"), "", "['\u0092\u2019&]", "get", _ident),
        (x("{APOS}") + _ci("till?"), "", "['\u0092\u2019&]", "get", _ident),
        (x(f"[{_ULETTER}]+[aeiouyAEIOUY]{{APOSETC}}[aeiouA-Z][{_ULETTER}]*"), "", f"[{_ULETTER}]", "get", _ident),
        (x("{APOS}") + _ci("cause"), "", "['\u0092\u2019&]", "get", _ident),
        (_ci(r"cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l"), "", "[cC'nNeEsSlL]", "get", _ident),
        (_ci("O") + x("{APOSETC}") + _ci("o"), "", "[oO]", "get", _ident),
        (_ci("y") + x("{APOS}"), f"[{_ULETTER}]", "[yY]", "get", _ident),  # APOWORD2
        (_ci("https?://") + "[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]", "", "[hH]", "get", _ident),
        ("(?:(?:" + _ci("www") + r"\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+"
         + _ci("(?:com|net|org|edu)") + "))(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?", "", ".", "url",
         _ident),
        ("(?:" + _ci("&lt;") + "|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@(?:[^ \t\n\f\r\"<>|(){}.\u00A0]+\\.)*"
         "(?:[^ \t\n\f\r\"<>|(){}.\u00A0]+)(?:" + _ci("&gt;") + "|>)?", "", "[&<a-zA-Z0-9]", "email", _ident),
        (x("@[a-zA-Z_][a-zA-Z_0-9]*|#{LETTER}+"), "", "[@#]", "get", _ident),
        (x("{REDAUX}"), "[^A-Za-z]", "['\u0092\u2019&]", "get", lambda t: _latex_quotes(t, False)),
        (x("{SREDAUX}"), "[^A-Za-z]", "[nN]", "get", lambda t: _latex_quotes(t, False)),
        (x(r"{DIGIT}{1,2}[\-/]{DIGIT}{1,2}[\-/]{DIGIT}{2,4}"), "", x("{DIGIT}"), "get", _ident),
        (x(r"[\-+]?{NUM}"), "", x("[-+.:,\u00AD\u066B\u066C{DIGITC}]"), "get", _soft),
        ("[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)", "",
         "[\u207A\u207B\u208A\u208B\u2070\u00B9\u00B2\u00B3\u2074-\u2079\u2080-\u2089]", "get", _ident),
        (x("(?:{DIGITS4}[- \u00A0])?{DIGITS4}(?:\\\\?/|\u2044){DIGITS4}"), "", x("{DIGIT}"), "get", _nbsp),
        ("[\u00BC\u00BD\u00BE\u2153-\u215E]", "", "[\u00BC\u00BD\u00BE\u2153-\u215E]", "get", _fraction),
        (_ci(r"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls|Cap")
         + x("{APOS}") + _ci("n|c") + x("{APOS}") + _ci("est"), "", "[-cCpPaAsS]", "get", _amp),
        (x(r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"), "", "[A-Za-z0-9]", "get",
         _ident),
        (r"[A-Z]*\$|#", "", "[A-Z$#]", "get", _ident),
        ("[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]", "",
         "[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]", "get", _currency),
        (x(r"{ACRO}\."), x("{SPACENL}+(?:" + _ACRONYM_NEXT + "|{SGML}){SPACENL}"), "[A-Za-z]", "acronym", _ident),
        (_M["ABBREV3"], x("{SPACENL}?{DIGIT}"), "[cCfFpPnNaAbBoO]", "get", _ident),
        (_ci(r"(?:pt[eyEY]|co)\."), x("{SPACE}") + _ci("(?:ltd|lim)"), "[pPcC]", "get", _ident),
        (_M["ABBREV1"], x(f"{{SPACENL}}(?:{{SPACENL}}|[{_UUPPER}]|{{SGML}})"), "[A-Za-z]", "abbrev", _ident),
        (_M["ABBREV1"], "..", "[A-Za-z]", "get", _ident),
        (_M["ABBREV1"], "", "[A-Za-z]", "abbrev", _ident),
        (f"(?:{_M['ABBREV4']})\\.", "", "[A-Za-z]", "get", _ident),
        (_M["ABBREV4"], x("{SPACE}"), "[A-Za-z]", "get", _ident),
        (_M["ACRO"], x("{SPACENL}"), "[A-Za-z]", "get", _ident),
        (x("{APOS}[0-9][0-9]"), x("{SPACENL}"), "['\u0092\u2019&]", "get", _ident),
        (x(f"{{LD}}+(?:\\.{{LD}}+)*\\." + _ci(f"(?:{_M['FILENAME_EXT']})")), x("{SPACENL}|[.?!,]"), LD, "get", _ident),
        (x(r"{WORD}\."), x("{INSENTP}"), L, "get", _soft),
        ("(?:\\([0-9]{2,3}\\)[ \u00A0]?|(?:\\+\\+?)?(?:[0-9]{2,4}[\\- \u00A0])?[0-9]{2,4}[\\- \u00A0])[0-9]{3,4}"
         "[\\- \u00A0]?[0-9]{3,5}|(?:(?:\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\.[0-9]{3,5}", "", "[(+0-9]",
         "get", lambda t: _parens(_nbsp(t))),
        ("\"|" + _ci("&quot;"), "[A-Za-z0-9$]", "[\"&]", "get", lambda t: _latex_quotes(t, True)),
        ("\"|" + _ci("&quot;"), "", "[\"&]", "get", lambda t: _latex_quotes(t, False)),
        ("\x7f", "", "\x7f", "skip", _ident),
        ("<|" + _ci("&lt;"), "", "[<&]", "get", lambda t: "<"),
        (">|" + _ci("&gt;"), "", "[>&]", "get", lambda t: ">"),
        (_M["SMILEY"], "[^A-Za-z0-9]", "[<>:;=]", "get", _parens),
        # the first alternative reproduces the original's escaped "\\[": a literal ".[^x=~<>]" sequence
        (r"[\^x=~<>]\." + _ci(r"\[\^x=~<>\]") + r"|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)"
         r"|\([\^x=~<>']-[\^x=~<>'`]\)", "", r"[\^x=~<>\-'(]", "get", _parens),
        (r"\{", "", r"\{", "get", lambda t: "-LCB-"),
        (r"\}", "", r"\}", "get", lambda t: "-RCB-"),
        (r"\[", "", r"\[", "get", lambda t: "-LSB-"),
        (r"\]", "", r"\]", "get", lambda t: "-RSB-"),
        (r"\(", "", r"\(", "get", lambda t: "-LRB-"),
        (r"\)", "", r"\)", "get", lambda t: "-RRB-"),
        (r"-+", "", "-", "get", _hyphens),
        (_M["LDOTS"], "", "[.\u0085\u2026]", "get", lambda t: "..."),
        ("@+|#+|_+", "", "[@#_]", "get", _ident),
        (r"\*+|(?:\\\*){1,3}", "", r"[*\\]", "get", _ident),
        (_M["INSENTP"], "", _M["INSENTP"], "get", _ident),
        ("[?!]+", "", "[?!]", "get", _ident),
        ("[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]", "",
         "[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]", "get", _ident),
        ("=", "", "=", "get", _ident),
        ("/", "", "/", "get", _ident),
        (x(r"{HTHING}\."), x("{INSENTP}"), "[A-Za-z0-9]", "get", _soft),
        (x("{HTHING}"), "", "[A-Za-z0-9]", "get", _soft),
        (x(r"{THING}\."), x("{INSENTP}"), x("{ULD}"), "get", _ident),
        (x("{THING}"), "", x("{ULD}"), "get", _ident),
        (x(r"{THINGA}\."), x("{INSENTP}"), "[A-Z]", "get", _amp),
        (x("{THINGA}"), "", "[A-Z]", "get", _amp),
        ("'", "[A-Za-z][^ \t\n\r\u00A0]", "'", "get", lambda t: _latex_quotes(t, True)),
        (x("{REDAUX}"), "", "['\u0092\u2019&]", "get", lambda t: _latex_quotes(t, False)),
        (x("{SREDAUX}"), "", "[nN]", "get", lambda t: _latex_quotes(t, False)),
        (_M["QUOTES"], "", "['\u0092\u2019&`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F"
         "\u2039\u203A\u00AB\u00BB]", "get", lambda t: _latex_quotes(t, False)),
        ("<<|>>", "", "[<>]", "get", _ident),
        (_M["MISCSYMBOL"], "", _M["MISCSYMBOL"], "get", _ident),
        (x("\x00|{SPACE}+|[\u200B\u200E-\u200F\uFEFF]"), "", x("[\x00\u200B\u200E\u200F\uFEFF]|{SPACE}"), "skip", _ident),
        (_M["NEWLINE"], "", "[\r\n\u2028\u2029\u000B\u000C\u0085]", "newline", _ident),
        (_ci("&nbsp;"), "", "&", "skip", _ident),
        ("[^\n]", "", "[^\n]", "untokenizable", _ident),
    ]
    rules = []
    for prio, (main, ctx, first, kind, fn) in enumerate(specs):
        rules.append((_Rule(prio, main, ctx, kind, fn), re.compile(first)))
    return rules


class _Lexer:
    """The rule engine: longest match over all rules, earliest rule on ties."""

    def __init__(self) -> None:
        self._rules = _build_rules()
        self._by_char: dict[str, list[_Rule]] = {}

    def _candidates(self, ch: str) -> list[_Rule]:
        rules = self._by_char.get(ch)
        if rules is None:
            rules = [rule for rule, first in self._rules if first.match(ch)]
            self._by_char[ch] = rules
        return rules

    def tokens(self, text: str, end: int, start: int = 0, stop_at: Callable[[int], bool] | None = None
               ) -> tuple[list[str], int]:
        """Tokens of ``text[start:end]``; ``text[end:]`` is right context only (what Java sees next).

        Stops early at the first position (after skipped characters) for which ``stop_at`` is true.
        Returns the tokens and the position reached.
        """
        out: list[str] = []
        pos = start
        has_url = ("www." in text.lower() or any(s in text.lower() for s in (".com", ".net", ".org", ".edu")))
        has_at = "@" in text
        while pos < end:
            if stop_at is not None and stop_at(pos):
                break
            best_len, best_rule, best_m = -1, None, None
            for rule in self._candidates(text[pos]):
                if rule.kind == "url" and not has_url:
                    continue
                if rule.kind == "email" and not has_at:
                    continue
                m = rule.regex.match(text, pos)
                if m is None:
                    continue
                total = m.end() - pos
                if rule.has_ctx:
                    total += len(m.group("c"))
                if total > best_len:
                    best_len, best_rule, best_m = total, rule, m
            assert best_rule is not None and best_m is not None
            tok = best_m.group()
            kind = best_rule.kind
            if kind in ("get", "url", "email"):
                out.append(best_rule.fn(tok))
                pos = best_m.end()
            elif kind == "skip" or kind == "untokenizable" or kind == "newline":
                pos = best_m.end()
            elif kind.startswith("push:"):
                keep = len(tok) - int(kind[5:])
                out.append(tok[:keep])
                pos += keep
            elif kind == "abbrev":
                out.append(tok)
                pos = best_m.end() - 1
            elif kind == "acronym":
                if len(tok) == 2:  # "I." and the like: the letter, then the period next time
                    out.append(tok[0])
                    pos += 1
                else:
                    out.append(tok)
                    pos = best_m.end() - 1
            else:  # pragma: no cover - all kinds are listed above
                raise AssertionError(kind)
        return out, pos


@functools.lru_cache(maxsize=1)
def _lexer() -> _Lexer:
    return _Lexer()


_SIMPLE_CHUNK = re.compile(r"[A-Za-z]+\Z")
_SPLIT_WORDS = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])
_NON_BMP = re.compile("[\U00010000-\U0010FFFF]")


def _java_chars(text: str) -> str:
    """Java's view of the text: a character outside the BMP becomes its two UTF-16 surrogates."""
    if text.isascii() or not _NON_BMP.search(text):
        return text
    return text.encode("utf-16-le").decode("utf-16-le", "surrogatepass")


def _python_chars(token: str) -> str:
    """Re-join surrogate pairs kept inside a token (URLs and e-mails may contain emoji)."""
    if not any("\ud800" <= ch <= "\udfff" for ch in token):
        return token
    return token.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def tokenize_line(caption: str, right_context: str = "") -> list[str]:
    """Lowercased PTB tokens of one caption (before the punctuation drop).

    ``right_context`` is what the Java tokenizer reads after the caption ("\\n" + the next caption, or "" at
    the end of its input); a few rules (sentence-final abbreviations and acronyms) look at it.
    """
    caption = _java_chars(caption)
    lexer = _lexer()
    if "<" in caption or "&" in caption:
        text = caption + _java_chars(right_context)
        toks, _ = lexer.tokens(text, len(caption))
        return [_python_chars(t).lower() for t in toks]
    chunks = caption.split(" ")
    starts = []
    p = 0
    for c in chunks:
        starts.append(p)
        p += len(c) + 1
    simple = [bool(_SIMPLE_CHUNK.match(c)) and c.lower() not in _SPLIT_WORDS for c in chunks]
    out: list[str] = []
    text = None
    simple_starts = None
    i = 0
    n = len(chunks)
    while i < n:
        if simple[i]:
            out.append(chunks[i].lower())
            i += 1
            continue
        if not chunks[i]:
            i += 1
            continue
        if text is None:
            text = caption + _java_chars(right_context)
            simple_starts = {starts[k] for k in range(n) if simple[k]}
        toks, pos = lexer.tokens(text, len(caption), starts[i], simple_starts.__contains__)
        out.extend(_python_chars(t).lower() for t in toks)
        # continue with the chunk starting at pos (pos is at a simple chunk start or at the end)
        while i < n and starts[i] < pos:
            i += 1
    return out


def _drop_punctuation(tokens: Iterable[str]) -> str:
    # pycocoevalcap: line.rstrip().split(' '), then the drop list
    line = " ".join(tokens).rstrip()
    return " ".join(w for w in line.split(" ") if w not in PUNCTUATIONS)


def _clean(captions: Sequence[str]) -> list[str]:
    for c in captions:
        if not isinstance(c, str):
            raise TypeError(f"captions must be str, got {type(c).__name__}: {c!r}")
    if not _LINE_BREAK_RE.search("".join(captions)):
        return list(captions)
    shifted = sum(1 for c in captions if any(ch in c for ch in JAVA_LINE_BREAKS))
    if shifted:
        logger.warning("%d caption(s) contain \\r, \\v, \\f, U+2028 or U+2029: treated as spaces (the Java "
                       "PTBTokenizer would split them into extra lines and misalign every later caption)", shifted)
    return [_LINE_BREAK_RE.sub(" ", c) for c in captions]


# Fast path: letters, spaces and commas, optionally one final period. Such a caption tokenizes to its
# lowercased letter runs unless it holds a split assimilation ("cannot", "gonna"...) or its last word with
# the period is an abbreviation or one-letter acronym (then the period may stay, depending on what follows).
_FAST_BODY = re.compile(r"[A-Za-z ,]*")
_FAST_SPLIT = ("cannot", "gonna", "gotta", "lemme", "gimme", "wanna")
_ABBREV_END = re.compile(_x(r"(?:{ABBREV1}|(?:{ABBREV4})\.)"))


def _fast_tokenize(caption: str) -> str | None:
    """The tokenized caption when the fast path applies, else None."""
    body = caption.rstrip(" ")
    period = body.endswith(".")
    if period:
        body = body[:-1]
    if not _FAST_BODY.fullmatch(body):
        return None
    low = body.lower()
    for w in _FAST_SPLIT:
        if w in low:
            return None
    words = low.replace(",", " ").split()
    if period and body[-1:].isalpha():  # "word." : is it an abbreviation keeping its period?
        if _ABBREV_END.fullmatch(body.rsplit(" ", 1)[-1].rsplit(",", 1)[-1] + "."):
            return None
    return " ".join(words)


def _right_context(captions: Sequence[str], i: int) -> str:
    """What Java reads after caption i: the following lines up to the first non-blank one, and one more."""
    if i == len(captions) - 1:
        return ""
    parts = []
    for j in range(i + 1, len(captions)):
        parts.append(captions[j])
        if captions[j].strip():
            parts += captions[j + 1:j + 2]
            break
    return "\n" + "\n".join(parts)


def tokenize(captions: Sequence[str]) -> list[str]:
    """PTB-tokenize captions exactly as pycocoevalcap's PTBTokenizer does (one output string per caption).

    The captions are treated as one Java input in this order (each caption sees the start of the next one,
    as the Java tokenizer does); line-break characters inside a caption are treated as spaces.
    """
    cleaned = _clean(captions)
    out = []
    for i, cap in enumerate(cleaned):
        fast = _fast_tokenize(cap)
        if fast is None:
            fast = _drop_punctuation(tokenize_line(cap, _right_context(cleaned, i)))
        out.append(fast)
    return out


class PTBTokenizer:
    """Drop-in replacement for ``pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer`` (no Java).

    ``tokenize({key: [{"caption": s}, ...]})`` or ``tokenize({key: [s, ...]})`` returns
    ``{key: [tokenized caption, ...]}`` in the same key and list order.
    """

    def tokenize(self, captions_for_image: Mapping) -> dict:
        keys, flat = [], []
        for k, caps in captions_for_image.items():
            if isinstance(caps, (str, Mapping)):
                raise TypeError(f"captions_for_image[{k!r}] must be a list of captions, got {type(caps).__name__}")
            for c in caps:
                keys.append(k)
                flat.append(c["caption"] if isinstance(c, Mapping) else c)
        out: dict = {}
        for k, t in zip(keys, tokenize(flat)):
            out.setdefault(k, []).append(t)
        return out
