//! Progress bars of the long-running offline commands (`prune`, `spool replay`, `dlq replay`):
//! shown on stderr only once the work has run for [`SHOW_AFTER`] and only on a terminal, so a
//! quick run or a script's output stays clean. The final summary is printed by the command.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Work that finishes sooner shows no bar.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

pub struct Progress {
    started: Instant,
    /// The total, when known (a bar); otherwise a spinner.
    len: Option<u64>,
    bar: OnceLock<ProgressBar>,
}

impl Progress {
    pub fn new(len: Option<u64>) -> Self {
        Self {
            started: Instant::now(),
            len,
            bar: OnceLock::new(),
        }
    }

    /// Moves the bar to `pos` with `message`, creating it once the work has run long enough.
    pub fn update(&self, pos: u64, message: impl FnOnce() -> String) {
        if self.bar.get().is_none()
            && (self.started.elapsed() < SHOW_AFTER || !std::io::stderr().is_terminal())
        {
            return;
        }
        let bar = self.bar.get_or_init(|| self.create());
        bar.set_position(pos);
        bar.set_message(message());
    }

    fn create(&self) -> ProgressBar {
        let (bar, template) = match self.len {
            Some(len) => (
                ProgressBar::new(len),
                "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {elapsed_precise} {msg}",
            ),
        };
        bar.set_style(ProgressStyle::with_template(template).expect("a valid progress template"));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Removes the bar (if one was shown) before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}
