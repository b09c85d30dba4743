//! The rules responder: ordered rules from a TOML file, first match wins, then a fallback.
//!
//! ```toml
//! # Reply to messages no rule matched; leave it out to stay silent instead.
//! fallback = "Thanks for your message! We'll get back to you shortly."
//! # Message types never answered, checked before any rule. This list is the default.
//! no_reply_kinds = ["reaction", "edit", "revoke", "system", "unsupported"]
//!
//! [[rule]]
//! name = "hours"                                  # optional: in logs and escalation reasons
//! keywords = ["hours", "horario", "open*"]        # any one of them, as whole words
//! reply = "We're open Monday to Friday, 9:00–18:00."
//!
//! [[rule]]
//! pattern = '(?i)\border\s*#?\d+'                 # a regex over the text as written
//! reply = "Let me look up your order…"
//!
//! [[rule]]
//! kinds = ["image", "document"]                   # only these message types
//! reply = "Thanks, we received your file."
//!
//! [[rule]]
//! keywords = ["agent", "human", "persona"]
//! action = "escalate"                             # reply (default) | no_reply | escalate
//! reason = "asked for a person"                   # escalate only; default: name, or "rule #n"
//! ```
//!
//! Every condition a rule states (`kinds`, `keywords`, `pattern`) must hold, and it states at
//! least one. Keywords match whole words, whatever the case. A keyword written without accents
//! ignores them ("dias" matches "días"); one written with accents requires them ("horário"
//! does not match "horario"), which keeps look-alike words of two languages apart. A keyword
//! can be several words ("good morning"), end in `*` to match the start of a word ("hour*"),
//! or be only symbols or emoji ("👋"), found anywhere in the text. Patterns use the `regex`
//! crate's syntax. Keywords and patterns need words: a message without text only matches rules
//! that state `kinds` alone.
//!
//! Invariant: the file is fully checked when loaded — bad regex, a rule without a condition, a
//! missing, empty or oversized reply — so deciding cannot fail, and every reply is non-empty
//! and within [`MAX_REPLY_CHARS`](super::MAX_REPLY_CHARS).

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::{
    Decision, ReplyTextProblem, Responder, ResponderBuildError, ResponderError, ResponderInput,
    check_reply_text,
};

/// The rules a fresh `replyd serve` answers with; a starting point for a business's own file.
pub const DEFAULT_RULES: &str = include_str!("default_rules.toml");

const DEFAULT_NO_REPLY_KINDS: [&str; 5] = ["reaction", "edit", "revoke", "system", "unsupported"];

/// Bounds the compiled size of one pattern, so a careless regex cannot eat the worker's memory.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// What is wrong with one `[[rule]]`.
#[derive(Debug, thiserror::Error)]
pub enum RuleProblem {
    #[error("it states no condition: give it `keywords`, `pattern` or `kinds`")]
    NoCondition,
    /// Counted from 1 within the rule's `keywords`.
    #[error("keyword #{0} is empty")]
    EmptyKeyword(usize),
    #[error("`pattern` is not a valid regex: {0}")]
    BadPattern(#[source] regex::Error),
    #[error("action \"reply\" needs a `reply` text")]
    MissingReply,
    #[error("`reply` {0}")]
    BadReply(ReplyTextProblem),
    #[error("`reply` is only used with action \"reply\"")]
    UnusedReply,
    #[error("`reason` is only used with action \"escalate\"")]
    UnusedReason,
    #[error("every kind it lists is in `no_reply_kinds`, so it can never match")]
    Unreachable,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    fallback: Option<String>,
    no_reply_kinds: Option<Vec<String>>,
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    pattern: Option<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    action: Action,
    reply: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    #[default]
    Reply,
    NoReply,
    Escalate,
}

/// Answers from a checked set of rules, without I/O.
#[derive(Debug)]
pub struct RulesResponder {
    rules: Vec<Rule>,
    no_reply_kinds: Vec<String>,
    /// `NoReply` when the file has no `fallback`.
    fallback: Decision,
}

#[derive(Debug)]
struct Rule {
    /// From 1, in file order.
    index: usize,
    kinds: Vec<String>,
    keywords: Vec<Keyword>,
    pattern: Option<Regex>,
    decision: Decision,
}

impl RulesResponder {
    /// The built-in [`DEFAULT_RULES`].
    pub fn builtin() -> Self {
        Self::from_toml(DEFAULT_RULES, "(built-in)").expect("the built-in rules are tested")
    }

    pub fn from_file(path: &Path) -> Result<Self, ResponderBuildError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ResponderBuildError::ReadRules {
                path: path.to_owned(),
                source,
            })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks a rules file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ResponderBuildError> {
        let file: RulesFile = Figment::from(Toml::string(text))
            .extract()
            .map_err(|source| ResponderBuildError::ParseRules {
                origin: origin.to_owned(),
                source: Box::new(source),
            })?;
        let no_reply_kinds = match file.no_reply_kinds {
            Some(kinds) => kinds.iter().map(|k| normalize_kind(k)).collect(),
            None => DEFAULT_NO_REPLY_KINDS.map(str::to_owned).to_vec(),
        };
        let rules = (file.rule.into_iter().enumerate())
            .map(|(i, spec)| {
                Rule::compile(i + 1, spec, &no_reply_kinds).map_err(|problem| {
                    ResponderBuildError::InvalidRule {
                        origin: origin.to_owned(),
                        index: i + 1,
                        problem,
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        let fallback = match file.fallback.as_deref().map(check_reply_text) {
            None => Decision::NoReply,
            Some(Ok(text)) => Decision::Reply(text.to_owned()),
            Some(Err(problem)) => {
                return Err(ResponderBuildError::InvalidFallback {
                    origin: origin.to_owned(),
                    problem,
                });
            }
        };
        Ok(Self {
            rules,
            no_reply_kinds,
            fallback,
        })
    }

    /// The decision for `input`: silence for `no_reply_kinds`, else the first matching rule's,
    /// else the fallback.
    pub fn evaluate(&self, input: &ResponderInput) -> Decision {
        let kind = normalize_kind(&input.kind);
        if self.no_reply_kinds.contains(&kind) {
            return Decision::NoReply;
        }
        let text = input.text.as_deref().map(Text::new);
        match self.rules.iter().find(|r| r.matches(&kind, text.as_ref())) {
            Some(rule) => {
                tracing::debug!(message.id = %input.message_id, rule.index = rule.index, "rule matched");
                rule.decision.clone()
            }
            None => self.fallback.clone(),
        }
    }
}

impl Responder for RulesResponder {
    fn decide<'a>(
        &'a self,
        input: &'a ResponderInput,
    ) -> BoxFuture<'a, Result<Decision, ResponderError>> {
        futures_util::future::ready(Ok(self.evaluate(input))).boxed()
    }
}

fn normalize_kind(kind: &str) -> String {
    kind.trim().to_ascii_lowercase()
}

impl Rule {
    fn compile(
        index: usize,
        spec: RuleSpec,
        no_reply_kinds: &[String],
    ) -> Result<Self, RuleProblem> {
        let kinds: Vec<String> = spec.kinds.iter().map(|k| normalize_kind(k)).collect();
        let keywords = (spec.keywords.iter().enumerate())
            .map(|(i, k)| Keyword::parse(k).ok_or(RuleProblem::EmptyKeyword(i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let pattern = (spec.pattern.as_deref())
            .map(|p| RegexBuilder::new(p).size_limit(MAX_PATTERN_BYTES).build())
            .transpose()
            .map_err(RuleProblem::BadPattern)?;
        if kinds.is_empty() && keywords.is_empty() && pattern.is_none() {
            return Err(RuleProblem::NoCondition);
        }
        if !kinds.is_empty() && kinds.iter().all(|k| no_reply_kinds.contains(k)) {
            return Err(RuleProblem::Unreachable);
        }
        let decision = match spec.action {
            Action::Reply => {
                if spec.reason.is_some() {
                    return Err(RuleProblem::UnusedReason);
                }
                let reply = spec.reply.as_deref().ok_or(RuleProblem::MissingReply)?;
                Decision::Reply(
                    check_reply_text(reply)
                        .map_err(RuleProblem::BadReply)?
                        .to_owned(),
                )
            }
            _ if spec.reply.is_some() => return Err(RuleProblem::UnusedReply),
            Action::NoReply if spec.reason.is_some() => return Err(RuleProblem::UnusedReason),
            Action::NoReply => Decision::NoReply,
            Action::Escalate => Decision::Escalate {
                reason: [spec.reason, spec.name]
                    .into_iter()
                    .flatten()
                    .map(|r| r.trim().to_owned())
                    .find(|r| !r.is_empty())
                    .unwrap_or_else(|| format!("rule #{index}")),
            },
        };
        Ok(Self {
            index,
            kinds,
            keywords,
            pattern,
            decision,
        })
    }

    fn matches(&self, kind: &str, text: Option<&Text>) -> bool {
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == kind) {
            return false;
        }
        if !self.keywords.is_empty()
            && !text.is_some_and(|t| self.keywords.iter().any(|k| k.matches(t)))
        {
            return false;
        }
        match &self.pattern {
            Some(pattern) => text.is_some_and(|t| pattern.is_match(t.raw)),
            None => true,
        }
    }
}

/// A message text, analysed once for every rule.
struct Text<'a> {
    raw: &'a str,
    lower: String,
    words: Vec<Word>,
}

/// One word of a message, lowercased, and also without accents.
struct Word {
    lower: String,
    folded: String,
}

impl<'a> Text<'a> {
    fn new(raw: &'a str) -> Self {
        Self {
            raw,
            lower: raw.to_lowercase(),
            words: split_words(raw),
        }
    }
}

fn split_words(text: &str) -> Vec<Word> {
    // Combining marks stay inside their word, so decomposed accents ("i\u{301}") fold too.
    text.split(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_lowercase();
            let folded = fold_accents(&lower);
            Word { lower, folded }
        })
        .collect()
}

#[derive(Debug)]
enum Keyword {
    /// Consecutive whole words; the last one may be a prefix (`hour*`).
    Words {
        words: Vec<KeywordWord>,
        prefix: bool,
    },
    /// A keyword with no letters or digits ("👋", "?!"), found anywhere in the lowercased text.
    Symbols(String),
}

#[derive(Debug)]
struct KeywordWord {
    lower: String,
    /// Written with accents: compared to the message's words as written, not folded.
    accented: bool,
}

impl Keyword {
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let words: Vec<KeywordWord> = (split_words(body).into_iter())
            .map(|w| KeywordWord {
                accented: w.lower != w.folded,
                lower: w.lower,
            })
            .collect();
        if !words.is_empty() {
            Some(Self::Words { words, prefix })
        } else if raw.is_empty() {
            None
        } else {
            Some(Self::Symbols(raw.to_lowercase()))
        }
    }

    fn matches(&self, text: &Text) -> bool {
        let (words, prefix) = match self {
            Self::Symbols(symbols) => return text.lower.contains(symbols.as_str()),
            Self::Words { words, prefix } => (words, *prefix),
        };
        text.words.windows(words.len()).any(|window| {
            window
                .iter()
                .zip(words)
                .enumerate()
                .all(|(i, (word, key))| {
                    let word = if key.accented {
                        &word.lower
                    } else {
                        &word.folded
                    };
                    if prefix && i + 1 == words.len() {
                        word.starts_with(key.lower.as_str())
                    } else {
                        *word == key.lower
                    }
                })
        })
    }
}

/// Lowercase Latin letters without their diacritics, enough for the languages WhatsApp
/// businesses mostly write in (es, pt, fr, de, it, tr, pl…); other scripts pass unchanged.
fn fold_accents(lower: &str) -> String {
    lower
        .chars()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| match c {
            'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
            'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => 'c',
            'ď' | 'đ' => 'd',
            'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => 'e',
            'ĝ' | 'ğ' | 'ġ' | 'ģ' => 'g',
            'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => 'i',
            'ł' | 'ľ' | 'ĺ' | 'ļ' => 'l',
            'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
            'ò'..='ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => 'o',
            'ŕ' | 'ř' => 'r',
            'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => 's',
            'ţ' | 'ť' | 'ț' => 't',
            'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => 'u',
            'ý' | 'ÿ' | 'ŷ' => 'y',
            'ź' | 'ż' | 'ž' => 'z',
            other => other,
        })
        .collect()
}

fn is_combining_mark(c: char) -> bool {
    ('\u{300}'..='\u{36f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{MAX_REPLY_CHARS, sample_input};
    use super::*;

    fn rules(toml: &str) -> RulesResponder {
        RulesResponder::from_toml(toml, "test.toml").unwrap()
    }

    /// The decision for each (kind, text), shown as "reply text", "-" (no reply) or "!reason".
    fn check(rules: &RulesResponder, cases: &[(&str, Option<&str>, &str)]) {
        for (kind, text, expected) in cases {
            let shown = match rules.evaluate(&sample_input(kind, *text)) {
                Decision::Reply(text) => text,
                Decision::NoReply => "-".into(),
                Decision::Escalate { reason } => format!("!{reason}"),
            };
            assert_eq!(&shown, expected, "{kind} {text:?}");
        }
    }

    fn text<'a>(text: &'a str, expected: &'a str) -> (&'a str, Option<&'a str>, &'a str) {
        ("text", Some(text), expected)
    }

    const SHOP: &str = r#"
        fallback = "fallback"
        [[rule]]
        keywords = ["hours", "horario", "good morning", "ship*", "👋"]
        reply = "hours"
        [[rule]]
        pattern = '(?i)\border\s*#?\d+'
        reply = "order"
        [[rule]]
        keywords = ["order"]
        reply = "which order?"
        [[rule]]
        name = "person"
        keywords = ["agent", "persona"]
        action = "escalate"
        [[rule]]
        keywords = ["x"]
        action = "escalate"
        [[rule]]
        keywords = ["stop spam"]
        action = "no_reply"
        [[rule]]
        kinds = ["image"]
        reply = "nice picture"
    "#;

    #[test]
    fn keywords_match_whole_words_whatever_the_case_and_accents() {
        check(
            &rules(SHOP),
            &[
                text("What are your HOURS?", "hours"),
                text("¿Cuál es su HORÁRIO?", "hours"), // an unaccented keyword ignores accents
                text("horari\u{301}o", "hours"),       // decomposed accents too
                text("Good   morning!", "hours"),
                text("do you shipping abroad", "hours"),
                text("hey👋", "hours"), // symbols anywhere
                text("office-hours", "hours"),
                text("hourses", "fallback"),
                text("good day, morning", "fallback"),
            ],
        );
        let pt = rules("[[rule]]\nkeywords = [\"horário\"]\nreply = \"pt\"");
        check(&pt, &[text("Qual o HORÁRIO?", "pt"), text("horario", "-")]);
    }

    #[test]
    fn first_match_wins_patterns_and_actions() {
        check(
            &rules(SHOP),
            &[
                text("hours for order #123?", "hours"),
                text("Where is ORDER #123", "order"),
                text("where is my order", "which order?"),
                text("quiero hablar con una persona", "!person"),
                text("x", "!rule #5"),
                text("Stop spam please", "-"),
            ],
        );
    }

    #[test]
    fn message_kinds_without_text_and_silenced_kinds() {
        let shop = rules(SHOP);
        check(
            &shop,
            &[
                ("image", None, "nice picture"),
                ("IMAGE", Some("hours?"), "hours"),
                ("audio", None, "fallback"),
            ],
        );
        for kind in DEFAULT_NO_REPLY_KINDS {
            check(&shop, &[(kind, Some("hours"), "-")]);
        }
        let custom = rules(
            "no_reply_kinds = [\"sticker\"]\nfallback = \"hi\"\n\
             [[rule]]\nkinds = [\"reaction\"]\nreply = \"thanks for the reaction\"",
        );
        check(
            &custom,
            &[
                ("reaction", Some("❤"), "thanks for the reaction"),
                ("sticker", None, "-"),
                ("system", None, "hi"), // the default list is replaced
            ],
        );
    }

    #[test]
    fn default_rules_answer_sensibly() {
        let r = RulesResponder::builtin();
        let fallback = "Thanks for your message! We'll get back to you shortly.\n\
                        ¡Gracias por tu mensaje! Te responderemos pronto.\n\
                        Obrigado pela sua mensagem! Responderemos em breve.";
        check(
            &r,
            &[
                text(
                    "Hola!",
                    "¡Hola! 👋 Gracias por escribirnos. ¿En qué podemos ayudarte?",
                ),
                text(
                    "hello there",
                    "Hello! 👋 Thanks for writing. How can we help you today?",
                ),
                text(
                    "Oi, bom dia",
                    "Olá! 👋 Obrigado por escrever. Como podemos ajudar?",
                ),
                text("xyzzy 42", fallback),
                text("I want a human", "!the contact asked for a person"),
                ("image", None, fallback),
                ("reaction", Some("👍"), "-"),
            ],
        );
        let hours = r.evaluate(&sample_input("text", Some("hola, ¿a qué hora abren?")));
        assert!(matches!(hours, Decision::Reply(t) if t.contains("horario comercial")));
    }

    #[test]
    fn invalid_rules_are_refused_with_their_index() {
        let long = format!(
            "keywords = [\"a\"]\nreply = \"{}\"",
            "x".repeat(MAX_REPLY_CHARS + 1)
        );
        let cases = [
            ("reply = \"x\"", "no condition"),
            (
                "pattern = \"(unclosed\"\nreply = \"x\"",
                "not a valid regex",
            ),
            (
                "keywords = [\"a\", \" \"]\nreply = \"x\"",
                "keyword #2 is empty",
            ),
            ("keywords = [\"a\"]", "needs a `reply`"),
            ("keywords = [\"a\"]\nreply = \"  \"", "`reply` is empty"),
            (&long, "4097 characters"),
            (
                "keywords = [\"a\"]\naction = \"no_reply\"\nreply = \"x\"",
                "only used",
            ),
            (
                "keywords = [\"a\"]\nreason = \"x\"\nreply = \"x\"",
                "only used",
            ),
            ("kinds = [\"reaction\"]\nreply = \"x\"", "never match"),
        ];
        for (rule, expected) in cases {
            let file = format!("[[rule]]\nkeywords = [\"ok\"]\nreply = \"ok\"\n[[rule]]\n{rule}");
            let err = RulesResponder::from_toml(&file, "test.toml").unwrap_err();
            assert!(
                matches!(err, ResponderBuildError::InvalidRule { index: 2, .. }),
                "{err}"
            );
            let message = err.to_string();
            assert!(
                message.starts_with("rules file test.toml, rule #2: "),
                "{message}"
            );
            assert!(message.contains(expected), "{message}");
        }
        let err = RulesResponder::from_toml("fallback = \"\"", "test.toml").unwrap_err();
        assert!(
            matches!(err, ResponderBuildError::InvalidFallback { .. }),
            "{err}"
        );
        for bad in [
            "[[rule]]\nkeyword = [\"typo\"]",
            "[[rule]]\naction = \"shout\"",
            "x = [",
        ] {
            let err = RulesResponder::from_toml(bad, "test.toml").unwrap_err();
            assert!(
                matches!(err, ResponderBuildError::ParseRules { .. }),
                "{err}"
            );
        }
    }

    proptest! {
        #[test]
        fn deciding_never_panics_and_replies_stay_in_bounds(
            text in proptest::option::of(any::<String>()),
            kind in prop::sample::select(vec!["text", "image", "reaction", "interactive", "Other"]),
        ) {
            for r in [RulesResponder::builtin(), rules(SHOP)] {
                let decided = r.decide(&sample_input(kind, text.as_deref())).now_or_never();
                let Some(Ok(decision)) = decided else {
                    return Err(TestCaseError::fail(format!("no decision: {decided:?}")));
                };
                if let Decision::Reply(reply) = decision {
                    prop_assert!(!reply.trim().is_empty());
                    prop_assert!(reply.chars().count() <= MAX_REPLY_CHARS);
                }
            }
        }
    }
}
