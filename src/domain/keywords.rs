//! Keyword messages that change a conversation by themselves: STOP-type words opt the contact
//! out, START-type words opt back in, escalation words hand the conversation to a human. Pure:
//! applied by the ingest transaction so that every later message already sees the change.
//!
//! A keyword counts only when it is the whole message (case, accents and surrounding
//! punctuation ignored): "STOP" or "¡Baja!" opt out, "please don't stop" does not.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeywordAction {
    OptOut,
    OptIn,
    Escalate,
}

/// The configured word lists (`[keywords]` in replyd.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Keywords {
    pub opt_out: Vec<String>,
    pub opt_in: Vec<String>,
    pub escalate: Vec<String>,
    /// Sent once when a keyword opts a contact out (the one message an opted-out contact gets);
    /// none when unset. A repeated STOP gets nothing.
    pub opt_out_reply: Option<String>,
    /// Sent instead of the responder's answer when a keyword opts a contact back in.
    pub opt_in_reply: Option<String>,
}

impl Default for Keywords {
    fn default() -> Self {
        let words = |ws: &[&str]| ws.iter().map(|w| (*w).to_owned()).collect();
        Self {
            opt_out: words(&[
                "stop",
                "stop all",
                "stopall",
                "unsubscribe",
                "opt out",
                "optout",
                "cancel",
                "end",
                "quit",
                "parar",
                "para",
                "baja",
                "darme de baja",
                "cancelar",
                "arrêt",
                "arreter",
                "arrêter",
                "désabonner",
                "sair",
                "descadastrar",
                "stopp",
                "abmelden",
            ]),
            opt_in: words(&[
                "start",
                "unstop",
                "subscribe",
                "resume",
                "alta",
                "reanudar",
                "empezar",
                "démarrer",
                "reprendre",
                "voltar",
                "começar",
                "iniciar",
                "anmelden",
            ]),
            escalate: words(&[
                "agent",
                "human",
                "operator",
                "representative",
                "agente",
                "humano",
                "persona",
                "asesor",
                "operador",
                "humain",
                "conseiller",
                "atendente",
                "mensch",
            ]),
            opt_out_reply: None,
            opt_in_reply: None,
        }
    }
}

impl Keywords {
    /// The confirmation to send for a message that changed consent, if one is configured.
    pub fn confirmation(&self, action: KeywordAction) -> Option<&str> {
        match action {
            KeywordAction::OptOut => self.opt_out_reply.as_deref(),
            KeywordAction::OptIn => self.opt_in_reply.as_deref(),
            KeywordAction::Escalate => None,
        }
        .filter(|t| !t.trim().is_empty())
    }

    /// What the message does by itself, if anything. Opt-out wins over the others.
    pub fn classify(&self, text: &str) -> Option<KeywordAction> {
        let said = normalize(text);
        if said.is_empty() {
            return None;
        }
        let listed = |list: &[String]| list.iter().any(|w| normalize(w) == said);
        if listed(&self.opt_out) {
            Some(KeywordAction::OptOut)
        } else if listed(&self.opt_in) {
            Some(KeywordAction::OptIn)
        } else if listed(&self.escalate) {
            Some(KeywordAction::Escalate)
        } else {
            None
        }
    }
}

/// Lower case, common Latin accents folded, punctuation at the edges and repeated spaces removed.
fn normalize(text: &str) -> String {
    let folded: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            other => other,
        })
        .collect();
    folded
        .trim_matches(|c: char| !c.is_alphanumeric())
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn whole_message_keywords_in_several_languages() {
        let k = Keywords::default();
        for stop in [
            "STOP",
            "stop.",
            "¡Baja!",
            "  Arrêt ",
            "unsubscribe",
            "Darme   de baja",
        ] {
            assert_eq!(k.classify(stop), Some(KeywordAction::OptOut), "{stop}");
        }
        for start in ["START", "Alta", "démarrer", "COMEÇAR!"] {
            assert_eq!(k.classify(start), Some(KeywordAction::OptIn), "{start}");
        }
        for human in ["agent", "Humano?", "persona"] {
            assert_eq!(k.classify(human), Some(KeywordAction::Escalate), "{human}");
        }
        for other in [
            "please don't stop",
            "stop sending me promos",
            "hola",
            "",
            "🙂",
        ] {
            assert_eq!(k.classify(other), None, "{other}");
        }
    }

    #[test]
    fn lists_are_configurable() {
        let k = Keywords {
            opt_out: vec!["basta".into()],
            opt_in: vec![],
            escalate: vec![],
            ..Keywords::default()
        };
        assert_eq!(
            k.confirmation(KeywordAction::OptOut),
            None,
            "no confirmation unless configured"
        );
        assert_eq!(k.classify("BASTA"), Some(KeywordAction::OptOut));
        assert_eq!(k.classify("stop"), None);
    }

    proptest! {
        #[test]
        fn classify_never_panics(text in "\\PC{0,40}") {
            let _ = Keywords::default().classify(&text);
        }
    }
}
