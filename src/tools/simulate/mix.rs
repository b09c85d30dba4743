//! The traffic mix: what share of simulated messages are opt-out keywords, media, reactions,
//! and what the rest (plain text, button replies, locations) looks like.
//!
//! Invariants: the three configured shares are each in 0–1 and sum to at most 1; every draw
//! takes exactly one number from the payload's seeded stream, so a seed gives the same run.

use rand::Rng;
use serde::Serialize;

/// How the part of the traffic that is neither keyword, media nor reaction splits (per mille).
const TEXT_PER_MILLE: u32 = 850;
const INTERACTIVE_PER_MILLE: u32 = 100;

/// The configured shares of messages, each 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mix {
    /// Whole-message opt-out keywords (`STOP`, `BAJA`…): these end `silent:opted_out`.
    pub keyword: f64,
    /// Images, voice notes, documents and videos.
    pub media: f64,
    /// Reactions to earlier replies; the built-in rules leave them unanswered (`silent:no_reply`).
    pub reaction: f64,
}

impl Mix {
    pub fn new(keyword: f64, media: f64, reaction: f64) -> Result<Self, String> {
        let shares = [keyword, media, reaction];
        if shares.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return Err("every share must be between 0.0 and 1.0".into());
        }
        if shares.iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err(format!(
                "--keyword-ratio + --media-ratio + --reaction-ratio is {:.3}, more than 1",
                shares.iter().sum::<f64>()
            ));
        }
        Ok(Self {
            keyword,
            media,
            reaction,
        })
    }

    /// The kind of the next message.
    pub fn draw(&self, rng: &mut impl Rng) -> Kind {
        let x: f64 = rng.r#gen();
        if x < self.keyword {
            return Kind::Keyword;
        }
        if x < self.keyword + self.media {
            return Kind::Media;
        }
        let answered = self.keyword + self.media + self.reaction;
        if x < answered {
            return Kind::Reaction;
        }
        // The rest of the unit interval, split by fixed shares.
        let rest = 1.0 - answered;
        let within = if rest > 0.0 {
            (x - answered) / rest
        } else {
            0.0
        };
        let per_mille = (within * 1000.0) as u32;
        if per_mille < TEXT_PER_MILLE {
            Kind::Text
        } else if per_mille < TEXT_PER_MILLE + INTERACTIVE_PER_MILLE {
            Kind::Interactive
        } else {
            Kind::Location
        }
    }
}

/// What one simulated message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Keyword,
    Media,
    Reaction,
    Interactive,
    Location,
}

/// Messages sent, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub text: u64,
    pub keyword: u64,
    pub media: u64,
    pub reaction: u64,
    pub interactive: u64,
    pub location: u64,
}

impl KindCounts {
    pub fn count(&mut self, kind: Kind) {
        *match kind {
            Kind::Text => &mut self.text,
            Kind::Keyword => &mut self.keyword,
            Kind::Media => &mut self.media,
            Kind::Reaction => &mut self.reaction,
            Kind::Interactive => &mut self.interactive,
            Kind::Location => &mut self.location,
        } += 1;
    }

    pub fn merge(&mut self, other: &KindCounts) {
        self.text += other.text;
        self.keyword += other.keyword;
        self.media += other.media;
        self.reaction += other.reaction;
        self.interactive += other.interactive;
        self.location += other.location;
    }

    pub fn total(&self) -> u64 {
        self.text + self.keyword + self.media + self.reaction + self.interactive + self.location
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn shares_out_of_range_or_above_one_in_sum_are_refused() {
        assert!(Mix::new(0.005, 0.1, 0.05).is_ok());
        assert!(Mix::new(1.0, 0.0, 0.0).is_ok());
        assert!(Mix::new(-0.1, 0.0, 0.0).is_err());
        assert!(Mix::new(0.5, 0.4, 0.2).unwrap_err().contains("more than 1"));
    }

    #[test]
    fn only_keywords_when_the_keyword_share_is_one() {
        let mix = Mix::new(1.0, 0.0, 0.0).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..1000).all(|_| mix.draw(&mut rng) == Kind::Keyword));
        let none = Mix::new(0.0, 0.0, 0.0).unwrap();
        assert!((0..1000).all(|_| {
            !matches!(
                none.draw(&mut rng),
                Kind::Keyword | Kind::Media | Kind::Reaction
            )
        }));
    }
}
