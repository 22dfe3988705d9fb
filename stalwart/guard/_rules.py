"""The rule layer: hand-written patterns for the shapes injections take.

Each rule has a name (reported in ``Verdict.reasons``) and a weight; weights of distinct rules
combine as independent evidence (noisy-or). Rules run on lower-cased normalised text and on its
rot13, leetspeak and squashed readings, so one rule covers the obfuscated variants too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from stalwart.guard._normalize import leet, rot13, squash

__all__ = ["RULES", "Rule", "RuleHit", "combine", "match_rules"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    weight: float
    pattern: re.Pattern[str]
    hints: tuple[str, ...] = ()
    """Lower-case substrings of which one must occur for the regex to be tried (speed only)."""


@dataclass(frozen=True, slots=True)
class RuleHit:
    name: str
    weight: float
    view: str


_OVERRIDE_VERB = r"(?:ignore|ignoring|disregard|forget|skip|override|overwrite|bypass|abandon|discard|drop|neglect|nevermind|never mind|do not follow|don'?t follow|stop following|set aside|throw out|pay no attention to)"
_INSTR = r"(?:i\w{0,2}nstr\w{0,2}ctions?|prompts?|rules|directions?|guidelines|commands?|orders|constraints|guardrails|restrictions|programming|directives?|policies|polic(?:y|ies)|safeguards|system (?:message|prompt)|context|tasks?|guidance|training|filters?)"
_PRIOR = r"(?:previous|prior|above|earlier|preceding|former|original|existing|initial|old|foregoing|all|any|every|your|the system|system|developer|safety|these|those|other)"

_ML_VERBS = (
    r"ignora|ignorar|ignoren|ignorez|ignorer|ignoriere|ignorier|ignorieren|vergiss|vergessen|olvida|olvide|olvidar|"
    r"oublie|oubliez|dimentica|dimenticare|esqueça|esqueca|negeer|vergeet|zignoruj|zapomnij|ignorera|glöm|unohda|"
    r"игнорируй|игнорируйте|забудь|забудьте|проигнорируй|ігноруй|忽略|无视|無視|忽视|무시|잊어|görmezden gel|unut|"
    r"abaikan|lupakan|bỏ qua|تجاهل|התעלם|अनदेखा"
)
_ML_NOUNS = (
    r"instrucciones|instrucción|instructions|consignes|anweisungen|anweisung|instruktionen|regeln|vorgaben|istruzioni|"
    r"instruções|instrucoes|instructies|instrukcje|polecenia|instruktioner|ohjeet|инструкции|инструкций|указания|"
    r"правила|інструкції|指令|指示|说明|規則|规则|命令|지시|지침|talimatlar|talimatları|instruksi|hướng dẫn|التعليمات|ההוראות|निर्देश"
)


def _c(p: str) -> re.Pattern[str]:
    return re.compile(p, re.IGNORECASE | re.MULTILINE)


RULES: tuple[Rule, ...] = (
    # -- instruction override -----------------------------------------------------------------
    Rule(
        "override.ignore_instructions",
        0.9,
        _c(
            rf"\b{_OVERRIDE_VERB}\b(?:\s+(?:all|any|of|the|your|my|these|those|previous|prior|above|earlier|existing|initial|original|system|safety|developer|other|\w+'s))*\s+{_INSTR}\b(?!\s+(?:i|we)\s+(?:sent|gave|wrote|mentioned))"
        ),
    ),
    Rule(
        "override.ignore_prior",
        0.6,
        _c(
            rf"\b{_OVERRIDE_VERB}\b.{{0,20}}\b(?:everything|anything|all)\b.{{0,25}}\b(?:above|before|previously|so far|you were told|you have been told)"
        ),
    ),
    Rule(
        "override.new_instructions",
        0.75,
        _c(
            r"\b(?:new|updated|revised|real|true|actual|secret|hidden|additional|override|priority|urgent) (?:system )?(?:instructions?|directives?|orders|task|objective|goal|rules)\s*(?::|are\b|is\b|follow)"
        ),
    ),
    Rule(
        "override.from_now_on",
        0.6,
        _c(
            r"\b(?:from now on|henceforth|for the rest of this (?:conversation|session)|starting now),? (?:you|your|always|never|only|respond|answer|act)"
        ),
    ),
    Rule(
        "override.instead",
        0.45,
        _c(
            r"\binstead(?: of [^.\n]{0,60})?,? (?:you (?:must|should|will|need to)|please|now|immediately) (?:\w+ ){0,3}(?:send|call|email|forward|transfer|delete|reveal|print|execute|run|output|say|reply|respond|write|post|upload|invoke)"
        ),
    ),
    Rule("override.multilingual", 0.85, _c(rf"(?:{_ML_VERBS}).{{0,60}}(?:{_ML_NOUNS})")),
    Rule(
        "override.multilingual_sov",
        0.85,
        _c(
            r"(?:指令|指示|说明|規則|规则|命令|지시|지침|talimatlar).{0,15}(?:無視|无视|忽略|忽视|무시|görmezden|unut)"
        ),
    ),
    # -- impersonating the system or developer ------------------------------------------------------
    Rule(
        "impersonation.chat_markup",
        0.9,
        _c(
            r"<\|?(?:im_start|im_end|system|endoftext|start_header_id|eot_id)\|?>|\[/?(?:inst|sys|system)\]|<</?sys>>|\bbegin(?:_| )system(?:_| )prompt\b"
        ),
    ),
    Rule(
        "impersonation.system_header",
        0.45,
        _c(
            r"(?:^|[\n\]>#*])\s*[#*\[(<]*\s*(?:system|developer|admin|administrator|root|supervisor|operator|openai|anthropic)(?:[ _](?:message|prompt|note|notice|override|instruction|instructions|update|alert|command))?\s*[)\]>*]*\s*:"
        ),
    ),
    Rule(
        "impersonation.system_tag",
        0.85,
        _c(
            r"###\s*\(?\s*system[_ ]?message|\(system[_ ]message\)|\[(?:system|admin|developer)[ _](?:override|message|note|instruction)s?\]|<(?:system|admin|developer)[ _-]?(?:override|message|note|instructions?)?>"
        ),
    ),
    Rule(
        "impersonation.claims_authority",
        0.75,
        _c(
            r"\b(?:this is|message from|note from|sent by|signed by|i am|i'm) (?:a |an |the |your )?(?:system administrator|system|developer|developers|admin|administrator|openai|anthropic|security team|it department|creator|owner|operator)s?\b[^.\n]{0,40}\b(?:you must|you are (?:now )?(?:required|authorized|instructed|ordered)|override|instructions?|authoriz|mandatory|immediately|new task|comply)"
        ),
    ),
    Rule(
        "impersonation.from_operator",
        0.6,
        _c(
            r"\b(?:message|reminder|notice|note|directive|instruction|instructions|update|order|memo|request) (?:from|by) (?:your|the) (?:developers?|operators?|admins?|administrators?|creators?|system|owners?|makers?|engineers?|trainers?)\b"
        ),
    ),
    Rule(
        "impersonation.directs_agent",
        0.45,
        _c(
            r"\b(?:the|this|you,? the|dear) (?:ai|a\.i\.|llm|language model|ai agent|ai assistant|assistant|model|chatbot|bot) (?:must|should|needs? to|is required to|has to|shall|is instructed to|is authori[sz]ed to)\b|\brequires? that the (?:agent|assistant|ai|model|bot)\b"
        ),
    ),
    Rule(
        "impersonation.relayed_user",
        0.5,
        _c(
            r"\b(?:per|as per|according to|on behalf of|as agreed with|as requested by|at the request of)\s+(?:the\s+)?(?:customer|user|client|account (?:holder|owner)|owner)(?:'s)?\b"
            r"|\b(?:the )?(?:user|customer|client|account owner|account holder) (?:has asked|asked|requests?|wants|would like|has requested|instructed|has authori[sz]ed|authori[sz]ed|pre-?approved) (?:that )?(?:you|the (?:assistant|agent|ai|model|bot))\b"
        ),
    ),
    Rule(
        "impersonation.system_header_ml",
        0.7,
        _c(
            r"\b(?:systemnachricht|message syst[eè]me|mensaje del sistema|messaggio di sistema|mensagem do sistema|systeembericht|wiadomo[sś][cć] systemowa|системное сообщение|sistem mesaj[ıi])\s*:|(?:系统消息|系統訊息|システムメッセージ|시스템 메시지)\s*[:：]"
        ),
    ),
    Rule(
        "impersonation.authorized_bypass",
        0.7,
        _c(
            r"\b(?:authori[sz]ed|permitted|allowed|cleared) to (?:bypass|ignore|override|disable|skip)\b|\b(?:admin|developer|debug|maintenance|god|sudo|root) (?:mode|access|override) (?:is )?(?:enabled|activated|on|granted)\b"
        ),
    ),
    Rule(
        "impersonation.addresses_ai",
        0.6,
        _c(
            r"\b(?:note|message|instructions?|attention|important|notice|hey|dear|hello)\b[^.\n]{0,12}\b(?:to|for)?\s*(?:the |any |all )?(?:ai|a\.i\.|llm|gpt|chatgpt|claude|language model|assistant|ai assistant|ai agent|agent|chatbot|bot|model)s?\b\s*(?:[:,!-]|reading|processing|that reads|who reads)"
            r"|\bif you are (?:an? )?(?:ai|llm|language model|ai assistant|assistant|agent|chatbot|bot|gpt|model)\b"
            r"|\b(?:ai|llm|assistant|agent|model)s? (?:reading|processing|summari[sz]ing|parsing) this\b"
        ),
    ),
    Rule(
        "impersonation.important_message",
        0.8,
        _c(
            r"<information>|<important>|<instruction>|</?admin>|this is an important message from me|important!{2,}|before you (?:can )?(?:solve|complete|continue|finish|answer|proceed|do) (?:the |this |your |with )?(?:task|request|that|anything)[^.\n]{0,60}(?:please |you (?:must|need to|have to|should) )"
        ),
    ),
    # -- requests to call tools or act -------------------------------------------------------------
    Rule(
        "tool.invoke",
        0.55,
        _c(
            r"\b(?:call|invoke|use|run|execute|trigger|fire|launch) (?:the |your |this )?[`'\"]?[a-z][a-z0-9]*(?:_[a-z0-9]+)+[`'\"]?(?: (?:tool|function|api|endpoint|action|command))?\b"
        ),
    ),
    Rule(
        "tool.function_syntax",
        0.25,
        _c(
            r"\b(?:delete|drop|truncate|wipe|destroy|purge|remove|reset|erase|shutdown|grant|transfer|send|export)_[a-z_]+\s*\("
        ),
    ),
    Rule(
        "tool.destructive",
        0.6,
        _c(
            r"\b(?:delete|drop|wipe|destroy|truncate|erase|purge) (?:the |all |every |entire |whole |production |prod )*(?:database|db|tables?|records|users|accounts|files|backups|repositor(?:y|ies)|data)\b(?! (?:was|were|is|has|had)\b)|\bformat (?:the )?(?:disk|drive|hard drive)"
        ),
    ),
    Rule(
        "tool.exfil_request",
        0.7,
        _c(
            r"\b(?:send|forward|email|e-mail|transfer|upload|post|leak|exfiltrate|share|copy|paste|include|append|embed|encode|dump|disclose|reveal|print|output|list|give me) (?:me |us )?(?:all|every|the full|the entire|the complete|all of the|all the|your|the user'?s?|his|her|their|any|a copy of the|the contents of the)\s+(?:\w+\s+){0,2}(?:passwords?|credentials|api[ _-]?keys?|secrets?|tokens?|private keys?|ssh keys?|emails?|inbox|messages|conversation|chat history|history|contacts|files|documents|data|customer data|records|credit card|card numbers?|ssn|system prompt|instructions|prompt|session|cookies?|environment variables|env vars?)\b[^.\n]{0,80}\b(?:to|at|into|in|via|using)\b"
        ),
    ),
    Rule(
        "tool.exfil_address",
        0.5,
        _c(
            r"\b(?:send|forward|email|transfer|wire|pay|upload|post|bcc|cc)\b[^.\n]{0,80}\b(?:to|at) [a-z0-9._%+-]+@[a-z0-9.-]*(?:attacker|evil|hacker|malicious|exfil|pwn|steal|leak|collector|dropbox-upload|webhook)[a-z0-9.-]*"
        ),
    ),
    Rule(
        "tool.url_sink",
        0.6,
        _c(
            r"https?://[^\s)]*(?:attacker|evil|exfil|webhook\.site|requestbin|ngrok|burpcollaborator|pipedream|interact\.sh|oast|pwn|steal|leak|collect)[^\s)]*"
        ),
    ),
    Rule(
        "tool.sensitive_action",
        0.45,
        _c(
            r"\b(?:wire|transfer|send|upload|post|export|forward|email|share|disclose|print|reveal|leak|dump|paste|give)\b[^.\n]{0,40}\b(?:remaining balance|all (?:the )?(?:funds|money)|conversation history|chat history|connection string|(?:full |entire )?(?:credit )?card numbers?|passwords?|credentials|api keys?|ssh keys?|private keys?|access tokens?|session tokens?|customer (?:table|database|list|records)|user (?:table|database|list)|home address|social security|environment variables|secrets?)\b"
            r"|\bwithout (?:checking|verifying|reviewing|asking|confirmation|approval|telling)\b|\b(?:grant|give)\b[^.\n]{0,30}\b(?:admin|administrator|root|owner|superuser) (?:access|rights|privileges|role)\b"
        ),
    ),
    # -- exfiltration through rendered markup -------------------------------------------------
    Rule(
        "exfil.markdown_image_data",
        0.85,
        _c(
            r"!\[[^\]]{0,100}\]\(\s*<?https?://[^)\s]*[?&][a-z0-9_]+=[^)\s]*(?:\{|\$|%7b|\[|<)|!\[[^\]]{0,100}\]\(\s*<?https?://[^)\s]*[?&](?:data|q|d|x|secret|token|key|p|payload|info|content|msg|chat|history|user|email|c|s)="
        ),
    ),
    Rule("exfil.html_image", 0.8, _c(r"<img[^>]+src\s*=\s*['\"]?https?://[^'\">\s]*[?&][a-z0-9_]+=")),
    Rule(
        "exfil.render_instruction",
        0.7,
        _c(
            r"\b(?:render|display|output|include|append|insert|show)\b[^.\n]{0,40}\b(?:markdown|image|img|pixel|link|url)\b[^.\n]{0,80}\b(?:with|containing|including|replace|where|append|encode|base64)\b[^.\n]{0,60}\b(?:data|conversation|history|secret|password|token|key|email|summary|the user|previous|information|messages?)\b"
        ),
    ),
    # -- role-play and jailbreaks ---------------------------------------------------------------
    Rule(
        "jailbreak.dan",
        0.9,
        _c(
            r"\bdo anything now\b|\bdan mode\b|\bdeveloper mode (?:enabled|activated|on|output)\b|\bjail ?broken?\b|\bjailbreak(?:ed|ing)?\b(?! (?:attempts?|attacks?|detection|research|techniques?|prompts? (?:are|were)|is a|are a|refers))|\bstan\b.{0,30}\bstrive to avoid norms\b|\banti-?dan\b|\bevil ?bot\b|\baim\b.{0,40}\balways intelligent and machiavellian\b"
        ),
    ),
    Rule(
        "jailbreak.no_limits",
        0.8,
        _c(
            r"\b(?:pretend|imagine|act|behave|roleplay|role-play|role play|respond|answer|operate|you are now|you're now|you will be|become|simulate)\b[^.\n]{0,60}\b(?:without|with no|free (?:of|from)|no longer (?:bound|restricted|limited)|not bound|unbound|unrestricted|unfiltered|uncensored|no (?:ethical|moral)|ignoring (?:all|any|your))\b[^.\n]{0,30}(?:restrictions|rules|filters|limits|limitations|guidelines|ethics|morals|censorship|policies|constraints|boundaries|safeguards|content polic)?"
        ),
    ),
    Rule(
        "jailbreak.persona",
        0.4,
        _c(
            r"\b(?:you are|you're) (?:now |no longer )(?:an? |the |my )?(?!(?:going|able|ready|in|on|at|all|done|set|connected|logged|subscribed|registered|eligible)\b)\w+|\bact as (?:an? )?(?:unrestricted|unfiltered|evil|rogue|uncensored|jailbroken|different|new)\b|\bstay in character\b|\bbreak character\b|\bswitch (?:to|into) (?:\w+ )?mode\b"
        ),
    ),
    Rule(
        "jailbreak.hypothetical",
        0.5,
        _c(
            r"\b(?:hypothetically|in a fictional world|for a (?:story|novel|movie)|purely fictional|as a thought experiment)\b[^.\n]{0,80}\b(?:how (?:to|would|do)|explain|write|give|provide)\b[^.\n]{0,60}\b(?:bomb|weapon|malware|ransomware|hack|exploit|steal|poison|meth|drugs|kill|explosive|virus)"
        ),
    ),
    # -- prompt extraction --------------------------------------------------------------------------
    Rule(
        "leak.system_prompt",
        0.75,
        _c(
            r"\b(?:reveal|show|print|repeat|output|display|tell|give|share|leak|dump|write out|recite|spell out|what (?:is|are|was|were))\b(?: me| us)?[^.\n]{0,20}\b(?:your|the|its|all)\b[^.\n]{0,15}\b(?:system prompt|system message|initial (?:prompt|instructions)|hidden (?:prompt|instructions)|secret (?:prompt|instructions)|original (?:prompt|instructions)|instructions (?:above|you were given)|pre-?prompt|developer (?:prompt|message|instructions)|confidential instructions|guidelines you were given)"
        ),
    ),
    Rule(
        "leak.verbatim",
        0.6,
        _c(
            r"\b(?:repeat|print|output|copy)\b[^.\n]{0,30}\b(?:everything|all text|the text|the words|all the words|the content)\b[^.\n]{0,30}\b(?:above|before this|preceding|so far|verbatim|word for word)\b"
        ),
    ),
    # -- payload delivery tricks -----------------------------------------------------------------
    Rule(
        "obfuscation.decode_and_follow",
        0.7,
        _c(
            r"\b(?:decode|decipher|decrypt|translate|unscramble|reverse|rot13|base64|hex)\b[^.\n]{0,60}\b(?:and|then)\b[^.\n]{0,20}\b(?:follow|execute|obey|do|run|perform|carry out|act on|comply)\b"
        ),
    ),
    Rule(
        "obfuscation.concatenate",
        0.6,
        _c(
            r"\b(?:concatenate|combine|join|put together|assemble)\b[^.\n]{0,60}\b(?:strings?|parts?|pieces|variables|a ?\+ ?b|x ?\+ ?y|segments?)\b[^.\n]{0,60}\b(?:follow|execute|obey|do|run|perform|instruction|command)\b"
        ),
    ),
    Rule(
        "obfuscation.split_vars",
        0.5,
        _c(
            r"\b[a-z]\s*=\s*['\"][^'\"]{1,40}['\"][;,]?\s*[a-z]\s*=\s*['\"][^'\"]{1,40}['\"][^\n]{0,80}\b(?:[a-z]\s*\+\s*[a-z])\b"
        ),
    ),
    Rule(
        "override.do_not_tell",
        0.55,
        _c(
            r"\b(?:do not|don't|never) (?:tell|inform|mention|reveal|alert|notify|let)(?: this to)? (?:the )?(?:user|human|customer|operator|anyone)\b|\bwithout (?:telling|informing|notifying|alerting) (?:the )?(?:user|human|customer)\b|\bkeep this (?:secret|hidden|between us)\b|\bsilently\b[^.\n]{0,30}\b(?:send|forward|delete|call|transfer|execute)"
        ),
    ),
    Rule(
        "override.task_hijack",
        0.5,
        _c(
            r"\b(?:your|the) (?:new |real |true |actual |only |primary )(?:task|job|goal|objective|purpose|mission|role) (?:is|now is|will be)\b|\b(?:stop|cease|abort|halt) (?:what you are doing|your current task|the current task|summari[sz]ing|translating)\b"
        ),
    ),
)

_OVERRIDE_HINTS = (
    "ignor",
    "disregard",
    "forget",
    "skip",
    "overrid",
    "overwrit",
    "bypass",
    "abandon",
    "discard",
    "drop",
    "neglect",
    "never mind",
    "nevermind",
    "follow",
    "set aside",
    "throw out",
    "pay no attention",
)
_HINTS: dict[str, tuple[str, ...]] = {
    "override.ignore_instructions": _OVERRIDE_HINTS,
    "override.ignore_prior": _OVERRIDE_HINTS,
    "override.new_instructions": ("instruction", "directive", "orders", "task", "objective", "goal", "rules"),
    "override.from_now_on": ("from now on", "henceforth", "for the rest of", "starting now"),
    "override.instead": ("instead",),
    "override.multilingual": tuple(_ML_VERBS.split("|")),
    "override.multilingual_sov": ("指令", "指示", "说明", "規則", "规则", "命令", "지시", "지침", "talimat"),
    "impersonation.chat_markup": ("<|", "|>", "[", "<<", "begin"),
    "impersonation.system_header": (
        "system",
        "developer",
        "admin",
        "root",
        "supervisor",
        "operator",
        "openai",
        "anthropic",
    ),
    "impersonation.system_tag": ("system", "admin", "developer"),
    "impersonation.claims_authority": (
        "this is",
        "message from",
        "note from",
        "sent by",
        "signed by",
        "i am",
        "i'm",
    ),
    "impersonation.from_operator": ("from your", "from the", "by your", "by the"),
    "impersonation.relayed_user": (
        "per ",
        "according to",
        "on behalf",
        "agreed with",
        "request",
        "user",
        "customer",
        "client",
        "owner",
        "holder",
    ),
    "impersonation.system_header_ml": (
        "system",
        "系统",
        "系統",
        "システム",
        "시스템",
        "sistem",
        "систем",
        "syst",
        "wiadomo",
    ),
    "impersonation.authorized_bypass": (
        "authori",
        "permitted",
        "allowed",
        "cleared",
        "mode",
        "access",
        "override",
    ),
    "impersonation.important_message": (
        "<information",
        "<important",
        "<instruction",
        "admin>",
        "important",
        "before you",
    ),
    "tool.invoke": ("_",),
    "tool.function_syntax": ("_",),
    "tool.destructive": ("delete", "drop", "wipe", "destroy", "truncate", "erase", "purge", "format"),
    "tool.exfil_address": ("@",),
    "tool.url_sink": ("http",),
    "exfil.markdown_image_data": ("![",),
    "exfil.html_image": ("<img",),
    "exfil.render_instruction": ("markdown", "image", "img", "pixel", "link", "url"),
    "jailbreak.dan": (
        "anything now",
        "dan mode",
        "developer mode",
        "jail",
        "stan",
        "anti",
        "evil",
        "machiavellian",
    ),
    "jailbreak.no_limits": (
        "without",
        "with no",
        "free of",
        "free from",
        "no longer",
        "not bound",
        "unbound",
        "unrestricted",
        "unfiltered",
        "uncensored",
        "no ethical",
        "no moral",
        "ignoring",
    ),
    "jailbreak.persona": ("you are", "you're", "act as", "character", "mode"),
    "jailbreak.hypothetical": (
        "hypothetical",
        "fiction",
        "for a story",
        "for a novel",
        "for a movie",
        "thought experiment",
    ),
    "leak.system_prompt": ("prompt", "system message", "instructions", "guidelines"),
    "leak.verbatim": ("above", "before this", "preceding", "so far", "verbatim", "word for word"),
    "obfuscation.decode_and_follow": (
        "decode",
        "decipher",
        "decrypt",
        "translate",
        "unscramble",
        "reverse",
        "rot13",
        "base64",
        "hex",
    ),
    "obfuscation.concatenate": ("concaten", "combine", "join", "put together", "assemble"),
    "obfuscation.split_vars": ("=",),
    "override.do_not_tell": ("do not", "don't", "never", "without", "keep this", "silently"),
    "override.task_hijack": (
        "task",
        "job",
        "goal",
        "objective",
        "purpose",
        "mission",
        "role",
        "stop",
        "cease",
        "abort",
        "halt",
    ),
}
RULES = tuple(replace(r, hints=_HINTS.get(r.name, ())) for r in RULES)

# Phrases that survive any spacing or punctuation trick: checked on letters only.
_SQUASHED = (
    (
        "override.squashed",
        0.85,
        (
            "ignoreallpreviousinstructions",
            "ignorepreviousinstructions",
            "ignoreallpriorinstructions",
            "ignorepriorinstructions",
            "ignoreyourinstructions",
            "ignoreyourpreviousinstructions",
            "ignoretheaboveinstructions",
            "ignoreallinstructions",
            "disregardpreviousinstructions",
            "disregardallpreviousinstructions",
            "disregardallpriorinstructions",
            "disregardyourinstructions",
            "forgetallpreviousinstructions",
            "forgetyourinstructions",
            "forgetpreviousinstructions",
            "ignoretheabove",
            "ignoreallrules",
            "ignoreyoursystemprompt",
            "ignorethesystemprompt",
            "ignoreyourguidelines",
            "overrideyourinstructions",
            "bypassyourrestrictions",
        ),
    ),
    (
        "jailbreak.squashed",
        0.85,
        ("doanythingnow", "developermodeenabled", "jailbreakmode", "nolongerboundby"),
    ),
    (
        "leak.squashed",
        0.75,
        (
            "revealyoursystemprompt",
            "printyoursystemprompt",
            "showmeyoursystemprompt",
            "repeatyoursystemprompt",
        ),
    ),
)

_QUOTES = "\"'`\u201c\u2018\u00ab"
_DISCUSSION = re.compile(
    r"\b(?:attacks?|payloads?|techniques?|phrases?|strings?|patterns?|tricks?|injections?|jailbreaks?|examples?|"
    r"prompts? (?:is|are|was|were)|style|variants?|classics?|means|refers)\b"
)
_MENTION_DAMPING = 0.35


def _is_mention(s: str, start: int, end: int) -> bool:
    """A phrase quoted and then talked about ("the 'ignore previous instructions' attack") is a
    mention, not a use: security articles and training material are full of them."""
    before = s[max(0, start - 3) : start]
    if not any(q in before for q in _QUOTES):
        return False
    return _DISCUSSION.search(s, end, min(len(s), end + 50)) is not None


_COMMON_WORDS = re.compile(
    r"\b(?:the|and|you|your|to|of|all|is|are|this|that|with|for|ignore|instructions|previous|now|please|send|system)\b"
)


def _english_hits(s: str) -> int:
    return len(_COMMON_WORDS.findall(s))


_LEET_WORD = re.compile(r"\b(?=[a-z@$]*[0134579@$])(?=[0-9@$]*[a-z])[a-z0134579@$]{3,}\b")
_LEET_TARGETS = frozenset(
    [
        "ignore",
        "all",
        "previous",
        "prior",
        "instructions",
        "instruction",
        "rules",
        "system",
        "prompt",
        "the",
        "you",
        "your",
        "send",
        "delete",
        "forget",
        "disregard",
        "reveal",
        "password",
        "passwords",
        "secret",
        "secrets",
        "email",
        "forward",
        "transfer",
        "database",
        "user",
        "users",
        "now",
        "new",
        "task",
        "override",
        "admin",
        "developer",
        "mode",
        "reply",
        "with",
        "their",
        "full",
        "credit",
        "card",
        "number",
        "include",
        "address",
        "follow",
    ]
)


def _looks_leet(low: str) -> bool:
    """Leetspeak is worth a second reading only if some mixed letter-digit words decode to words
    that matter (IDs, hashes and UUIDs do not)."""
    hits = 0
    for m in _LEET_WORD.finditer(low):
        if leet(m.group(0)) in _LEET_TARGETS:
            hits += 1
            if hits >= 2:
                return True
    return False


def match_rules(text: str, view: str = "normalized", *, variants: bool = True) -> list[RuleHit]:
    """Rules that fire on ``text`` (already normalised) or, with ``variants``, on its rot13,
    leetspeak or squashed readings."""
    low = text.lower()
    hits: dict[str, RuleHit] = {}

    def run(s: str, v: str) -> None:
        for r in RULES:
            if r.name in hits or (r.hints and not any(h in s for h in r.hints)):
                continue
            m = r.pattern.search(s)
            if m is not None:
                w = r.weight * _MENTION_DAMPING if _is_mention(s, m.start(), m.end()) else r.weight
                hits[r.name] = RuleHit(r.name, w, v)

    run(low, view)
    if variants:
        r13 = rot13(low)
        if _english_hits(r13) > _english_hits(low):
            run(r13, "rot13")
        if _looks_leet(low):
            run(leet(low), "leet")
        sq = squash(low)
        for name, weight, phrases in _SQUASHED:
            category = name.split(".")[0] + "."
            if any(k.startswith(category) for k in hits):
                continue  # the readable form already matched (and was judged as use or mention)
            if any(p in sq for p in phrases):
                hits[name] = RuleHit(name, weight, view)
        rev = squash(low[::-1])
        for name, weight, phrases in _SQUASHED:
            if name + ".reversed" not in hits and any(p in rev for p in phrases):
                hits[name + ".reversed"] = RuleHit(name, weight, "reversed")
    return list(hits.values())


def combine(hits: list[RuleHit]) -> float:
    """Noisy-or of the weights of distinct rules."""
    miss = 1.0
    seen: set[str] = set()
    for h in hits:
        if h.name in seen:
            continue
        seen.add(h.name)
        miss *= 1.0 - h.weight
    return 1.0 - miss
