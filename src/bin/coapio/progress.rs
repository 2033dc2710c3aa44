//! What a person sees while waiting, drawn on stderr when it is a terminal and not at all
//! otherwise (`indicatif`): a bar for block-wise transfers (bytes of the total that
//! Size1/Size2 announce, or a byte count without one), a spinner while a request waits and
//! no block progress can be seen, and a live counter of an observation's notifications.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{BlockProgress, ProgressHook};

/// A progress indicator, hidden when stderr is not a terminal.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bar: ProgressBar,
    pub(crate) visible: bool,
}

impl Progress {
    /// A spinner labelled `what`, drawn if stderr is a terminal and `enabled`.
    pub(crate) fn new(what: &str, enabled: bool) -> Self {
        let visible = enabled && std::io::stderr().is_terminal();
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(what.to_owned());
        if visible {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Self { bar, visible }
    }

    /// The hook that turns block options seen on the wire into this bar's position, or
    /// `None` when nothing is drawn.
    pub(crate) fn hook(&self) -> Option<ProgressHook> {
        if !self.visible {
            return None;
        }
        let bar = self.bar.clone();
        Some(Arc::new(move |p: BlockProgress| {
            let verb = if p.upload { "sent" } else { "received" };
            match p.total {
                Some(total) if bar.length() != Some(total) => {
                    bar.set_length(total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:24}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_message(format!("block-wise, {verb}"));
                }
                None if bar.length().is_none() => {
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} block-wise: {bytes} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(verb);
                }
                _ => {}
            }
            bar.set_position(p.done);
        }))
    }

    /// Sets the label (the observation counter uses it).
    pub(crate) fn message(&self, m: String) {
        self.bar.set_message(m);
    }

    /// Runs `f` (which writes to the terminal) with the indicator out of the way.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the indicator.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
