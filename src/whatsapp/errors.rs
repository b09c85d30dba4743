//! What a failed Cloud API send means for replyd: retry (and how), dead-letter, or halt the
//! sending number. Pure: codes in, classes out.
//!
//! Meta asks clients to build their handling on `error.code`, never on the title or the HTTP
//! status (throttling codes documented as 429 are often observed as 400). The HTTP status is only
//! consulted when an answer carries no parseable code. The table follows WHATSAPP.md §6; the
//! classes are our engineering call. Halting is reserved for failures that would hit every
//! message from the number (auth, account, policy, configuration), so one broken number stops
//! burning its queue instead of dead-lettering it message by message.

/// What replyd should do about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again later with backoff (transport errors before the request was sent, 5xx, 429,
    /// throughput codes …).
    Retryable(RetryHint),
    /// Never retry: goes to the dead-letter queue (invalid parameter, undeliverable, outside the
    /// 24 h window, unsupported …).
    Permanent,
    /// Stop all sends from this business number and alert (auth expired, account locked, not
    /// registered, policy block …).
    HaltSender,
}

impl FailureClass {
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// How a retryable failure should be retried; the retry policy turns this into delays and caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Ordinary backoff: transport errors, 5xx without a code, 408.
    Normal,
    /// The service is down or overloaded (503-class): a larger backoff multiplier.
    ServiceUnavailable,
    /// An API-call or account rate limit (429-class): long backoff, honour `Retry-After`.
    RateLimited,
    /// 130429, the number's messages-per-second throughput: retry soon, throttle the number.
    Throughput,
    /// 131056, too many messages to the same user: Meta says retry after 4^n seconds.
    PairRateLimit,
    /// The API could not say what went wrong (1, 131000, unknown codes): retry only a few times,
    /// then dead-letter.
    Limited,
}

/// Classifies a Cloud API `error.code`. Unknown codes get a few retries and then the dead-letter
/// queue: a code Meta adds later should neither halt a number nor drop a message on first sight.
pub fn classify_code(code: i64) -> FailureClass {
    use FailureClass::{HaltSender, Permanent, Retryable};
    use RetryHint::*;
    match code {
        // Auth: the token is invalid or expired.
        0 | 190 => HaltSender,
        // Permissions and capabilities: every message from the number would fail the same way.
        3 | 10 | 200..=299 | 131005 => HaltSender,
        // Account state: locked, payment/eligibility, registration, policy block, spam limit.
        131031 | 131042 | 131045 | 133010 | 368 | 131048 => HaltSender,

        1 | 131000 => Retryable(Limited),
        2 | 131016 | 131057 | 133004 => Retryable(ServiceUnavailable),
        4 | 80007 => Retryable(RateLimited),
        130429 => Retryable(Throughput),
        131056 => Retryable(PairRateLimit),

        // Invalid requests and recipients that will never accept this message.
        100 | 130472 | 131008 | 131009 | 131021 | 131026 | 131051 => Permanent,
        // Outside the 24 h window (470 is the legacy form of 131047): only a template would do.
        131047 | 470 => Permanent,
        // Meta chose not to deliver, or the user stopped marketing messages.
        131049 | 131050 => Permanent,
        // Media download/upload failures: the media must be fixed first.
        131052 | 131053 => Permanent,
        // Template problems.
        132000 | 132001 | 132005 | 132007 | 132012 | 132015 | 132016 | 132018 => Permanent,
        135000 => Permanent,

        _ => Retryable(Limited),
    }
}

/// Classifies an error answer that carried no parseable `error.code`.
pub fn classify_http_status(status: u16) -> FailureClass {
    use FailureClass::{HaltSender, Permanent, Retryable};
    match status {
        401 | 403 => HaltSender,
        408 => Retryable(RetryHint::Normal),
        429 => Retryable(RetryHint::RateLimited),
        503 => Retryable(RetryHint::ServiceUnavailable),
        500..=599 => Retryable(RetryHint::Normal),
        400..=499 => Permanent,
        // 1xx/3xx (redirects are not followed) or a 2xx treated as a failure: nothing we
        // understand, so a few retries and then the dead-letter queue.
        _ => Retryable(RetryHint::Limited),
    }
}

#[cfg(test)]
mod tests {
    use super::FailureClass::{HaltSender, Permanent, Retryable};
    use super::RetryHint::*;
    use super::*;

    /// Every code listed in WHATSAPP.md §6 with its class.
    const TABLE: &[(i64, FailureClass)] = &[
        (0, HaltSender),
        (190, HaltSender),
        (3, HaltSender),
        (10, HaltSender),
        (200, HaltSender),
        (1, Retryable(Limited)),
        (2, Retryable(ServiceUnavailable)),
        (4, Retryable(RateLimited)),
        (80007, Retryable(RateLimited)),
        (100, Permanent),
        (130429, Retryable(Throughput)),
        (130472, Permanent),
        (131000, Retryable(Limited)),
        (131005, HaltSender),
        (131008, Permanent),
        (131009, Permanent),
        (131016, Retryable(ServiceUnavailable)),
        (131021, Permanent),
        (131026, Permanent),
        (131031, HaltSender),
        (131042, HaltSender),
        (131045, HaltSender),
        (131047, Permanent),
        (131048, HaltSender),
        (131049, Permanent),
        (131050, Permanent),
        (131051, Permanent),
        (131052, Permanent),
        (131053, Permanent),
        (131056, Retryable(PairRateLimit)),
        (131057, Retryable(ServiceUnavailable)),
        (132000, Permanent),
        (132001, Permanent),
        (132005, Permanent),
        (132007, Permanent),
        (132012, Permanent),
        (132015, Permanent),
        (132016, Permanent),
        (132018, Permanent),
        (133004, Retryable(ServiceUnavailable)),
        (133010, HaltSender),
        (135000, Permanent),
        (368, HaltSender),
        (470, Permanent),
    ];

    #[test]
    fn every_documented_code_has_its_class() {
        for &(code, class) in TABLE {
            assert_eq!(classify_code(code), class, "code {code}");
        }
    }

    #[test]
    fn the_whole_permission_range_halts_the_sender() {
        for code in 200..=299 {
            assert_eq!(classify_code(code), HaltSender, "code {code}");
        }
        assert_eq!(classify_code(199), Retryable(Limited));
        assert_eq!(classify_code(300), Retryable(Limited));
    }

    #[test]
    fn unknown_codes_are_retried_a_few_times() {
        for code in [-1, 5, 99, 131999, 999_999, i64::MAX, i64::MIN] {
            assert_eq!(classify_code(code), Retryable(Limited), "code {code}");
        }
    }

    #[test]
    fn http_statuses_without_a_code() {
        let cases = [
            (500, Retryable(Normal)),
            (502, Retryable(Normal)),
            (503, Retryable(ServiceUnavailable)),
            (504, Retryable(Normal)),
            (429, Retryable(RateLimited)),
            (408, Retryable(Normal)),
            (401, HaltSender),
            (403, HaltSender),
            (400, Permanent),
            (404, Permanent),
            (413, Permanent),
            (302, Retryable(Limited)),
            (200, Retryable(Limited)),
        ];
        for (status, class) in cases {
            assert_eq!(classify_http_status(status), class, "HTTP {status}");
        }
    }

    #[test]
    fn is_retryable_matches_the_variant() {
        assert!(Retryable(Normal).is_retryable());
        assert!(!Permanent.is_retryable());
        assert!(!HaltSender.is_retryable());
    }
}
