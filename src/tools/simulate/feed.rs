//! The sequence of POSTs a run sends: which are new payloads and which re-send an earlier one.
//!
//! Exactly `round(i · ratio)` of the first `i` POSTs are duplicates, spread evenly; each picks a
//! random earlier unique payload and re-sends it byte-identical (same body, same signature).
//! Workers draw from a [`Feed`]: pre-built when the whole run fits in memory, otherwise built on
//! demand behind a lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::header::HeaderValue;

use super::mix::KindCounts;
use super::payload::{self, PayloadSpec};
use crate::whatsapp::signature;

/// One POST: the exact bytes, their signature header, and what a new payload carries.
#[derive(Debug, Clone)]
pub struct Post {
    pub body: Bytes,
    pub signature: HeaderValue,
    /// `None` for a duplicate.
    pub fresh: Option<Carried>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub messages: u32,
    pub statuses: u32,
    pub kinds: KindCounts,
}

/// Decides and builds POSTs one after the other; deterministic for a given seed and clock.
pub struct Generator {
    schedule: Schedule,
    builder: Builder,
    /// Built unique posts, kept when duplicates should share them instead of rebuilding.
    kept: Option<Vec<Post>>,
}

impl Generator {
    pub fn new(spec: PayloadSpec, secret: &[u8], duplicate_ratio: f64, keep: bool) -> Self {
        Self {
            schedule: Schedule {
                duplicate_ratio: duplicate_ratio.clamp(0.0, 1.0),
                rng: StdRng::seed_from_u64(spec.seed ^ 0x5151_d00b_1e5e_ed00),
                issued: 0,
                stamps: Vec::new(),
            },
            builder: Builder {
                spec,
                secret: secret.to_vec(),
            },
            kept: keep.then(Vec::new),
        }
    }

    /// The next POST; new payloads are stamped `now_unix`.
    pub fn next_post(&mut self, now_unix: u64) -> Post {
        let pick = self.schedule.next(now_unix);
        if let (Some(kept), false) = (&mut self.kept, pick.fresh) {
            return Post {
                fresh: None,
                ..kept[pick.n as usize].clone()
            };
        }
        let post = self.builder.build(pick);
        if let Some(kept) = &mut self.kept {
            kept.push(post.clone());
        }
        post
    }
}

/// Which unique payload each POST carries: a new one, or a random earlier one again.
struct Schedule {
    duplicate_ratio: f64,
    rng: StdRng,
    issued: u64,
    /// Timestamp of every unique payload so far, so a duplicate can be rebuilt identically.
    stamps: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Pick {
    n: u64,
    stamp: u64,
    fresh: bool,
}

impl Schedule {
    fn next(&mut self, now_unix: u64) -> Pick {
        let i = self.issued as f64;
        self.issued += 1;
        let duplicate = !self.stamps.is_empty()
            && ((i + 1.0) * self.duplicate_ratio).floor() > (i * self.duplicate_ratio).floor();
        if duplicate {
            let n = self.rng.gen_range(0..self.stamps.len());
            return Pick {
                n: n as u64,
                stamp: self.stamps[n],
                fresh: false,
            };
        }
        self.stamps.push(now_unix);
        Pick {
            n: self.stamps.len() as u64 - 1,
            stamp: now_unix,
            fresh: true,
        }
    }
}

/// Encodes and signs picked payloads; needs no lock, so workers build in parallel.
struct Builder {
    spec: PayloadSpec,
    secret: Vec<u8>,
}

impl Builder {
    fn build(&self, pick: Pick) -> Post {
        let p = payload::build(&self.spec, pick.n, pick.stamp);
        let signature = HeaderValue::try_from(signature::sign(&self.secret, &p.body))
            .expect("sha256=<hex> is a valid header value");
        let carried = Carried {
            messages: p.messages,
            statuses: p.statuses,
            kinds: p.kinds,
        };
        Post {
            body: Bytes::from(p.body),
            signature,
            fresh: pick.fresh.then_some(carried),
        }
    }
}

/// Where workers take their next POST from; `None` once a counted run is used up.
pub struct Feed(Source);

enum Source {
    Ready { posts: Vec<Post>, next: AtomicUsize },
    Live(Box<Live>),
}

/// Only the pick is taken under the lock; building and signing happen outside it.
struct Live {
    schedule: Mutex<Schedule>,
    builder: Builder,
    limit: Option<u64>,
}

impl Feed {
    /// Builds all `count` posts now, so the timed loop only clones refcounted bytes.
    pub fn prebuilt(mut generator: Generator, count: u64, now_unix: u64) -> Self {
        let posts = (0..count).map(|_| generator.next_post(now_unix)).collect();
        Feed(Source::Ready {
            posts,
            next: AtomicUsize::new(0),
        })
    }

    pub fn live(generator: Generator, limit: Option<u64>) -> Self {
        let Generator {
            schedule, builder, ..
        } = generator;
        let schedule = Mutex::new(schedule);
        Feed(Source::Live(Box::new(Live {
            schedule,
            builder,
            limit,
        })))
    }

    /// The next POST and its position in the run.
    pub fn next(&self) -> Option<(u64, Post)> {
        match &self.0 {
            Source::Ready { posts, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                posts.get(i).map(|p| (i as u64, p.clone()))
            }
            Source::Live(live) => {
                let (i, pick) = {
                    let mut s = live
                        .schedule
                        .lock()
                        .expect("schedule lock is never poisoned");
                    if live.limit.is_some_and(|limit| s.issued >= limit) {
                        return None;
                    }
                    (s.issued, s.next(super::unix_now()))
                };
                Some((i, live.builder.build(pick)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(ratio: f64, keep: bool) -> Generator {
        let spec = PayloadSpec {
            seed: 3,
            phone_number_id: "100000000000001".into(),
            senders: 10,
            messages_per_payload: 2,
            status_ratio: 0.3,
            mix: crate::tools::simulate::mix::Mix::new(0.005, 0.1, 0.0).unwrap(),
        };
        Generator::new(spec, b"secret", ratio, keep)
    }

    #[test]
    fn duplicates_are_byte_identical_resends_in_the_requested_share() {
        for keep in [true, false] {
            let mut g = generator(0.5, keep);
            let posts: Vec<Post> = (0..1000).map(|i| g.next_post(1_700_000_000 + i)).collect();
            let fresh: Vec<&Post> = posts.iter().filter(|p| p.fresh.is_some()).collect();
            assert_eq!(fresh.len(), 500);
            for dup in posts.iter().filter(|p| p.fresh.is_none()) {
                let original = fresh
                    .iter()
                    .find(|p| p.body == dup.body)
                    .expect("an earlier original");
                assert_eq!(original.signature, dup.signature);
            }
            let mut bodies: Vec<&Bytes> = fresh.iter().map(|p| &p.body).collect();
            bodies.sort();
            bodies.dedup();
            assert_eq!(bodies.len(), 500, "fresh payloads are all distinct");
        }
    }

    #[test]
    fn first_post_is_fresh_even_when_everything_else_is_a_duplicate() {
        let mut g = generator(1.0, true);
        assert!(g.next_post(1).fresh.is_some());
        assert!((0..20).all(|_| g.next_post(1).fresh.is_none()));
    }

    #[test]
    fn signature_verifies_against_the_exact_body() {
        let mut g = generator(0.0, false);
        let post = g.next_post(1_700_000_000);
        let header = post.signature.as_bytes();
        assert_eq!(
            signature::verify(b"secret", Some(header), &post.body),
            Ok(())
        );
    }

    #[test]
    fn counted_feed_stops_at_its_limit() {
        let feed = Feed::live(generator(0.2, false), Some(5));
        assert_eq!(std::iter::from_fn(|| feed.next()).count(), 5);
        let feed = Feed::prebuilt(generator(0.2, true), 7, 1);
        let indices: Vec<u64> = std::iter::from_fn(|| feed.next()).map(|(i, _)| i).collect();
        assert_eq!(indices, (0..7).collect::<Vec<_>>());
    }
}
