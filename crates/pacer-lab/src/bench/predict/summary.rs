//! A row's summary over its runs, and the goals.

use super::*;

/// One row of the table: a workload over a link, over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct RowSummary {
    /// Workload.
    pub workload: Wl,
    /// Link.
    pub link: Link,
    /// Runs made / completed.
    pub runs: usize,
    /// See `runs`.
    pub completed: usize,
    /// Runs cancelled as not converging.
    pub not_converged: usize,
    /// Median actual total, ms.
    pub total_time_ms: Option<f64>,
    /// Median Pacer error at each fraction.
    pub pacer: [Option<f64>; 4],
    /// Median naive error at each fraction.
    pub naive: [Option<f64>; 4],
    /// Whether some naive cell came from the bench's own estimate.
    pub naive_from_bench: [bool; 4],
    /// Median error of the prediction before the start.
    pub before: Option<f64>,
    /// The goal's verdict (completed runs).
    pub verdict: Verdict,
    /// The band over the completed runs.
    pub band: BandPool,
    /// When Pacer recognised each not-converged run, ms after the condition.
    pub recognised_ms: Vec<Option<u64>>,
    /// The latest of them (None: none, or one never recognised).
    pub recognised_max_ms: Option<u64>,
    /// Every not-converged run recognised within 5 s (None: there was none).
    pub recognised_ok: Option<bool>,
    /// "Does not converge" in force while the migration converged, ms, over the runs.
    pub wrong_stuck_ms: u64,
    /// Nothing changes after the start: the prediction before it is scored.
    pub before_scored: bool,
    /// That prediction's goal in this row (None: not scored here).
    pub before_ok: Option<bool>,
}

pub(super) fn med_cols(rows: &[&PredictRun], f: impl Fn(&PredictRun) -> [Option<f64>; 4]) -> [Option<f64>; 4] {
    let mut out = [None; 4];
    for (i, o) in out.iter_mut().enumerate() {
        *o = median(&rows.iter().filter_map(|r| f(r)[i]).collect::<Vec<_>>());
    }
    out
}

/// Summarises one (workload, link).
pub fn summarize(w: Wl, l: Link, runs: &[PredictRun]) -> RowSummary {
    let row = Row::of(runs, |r| r.workload == w && r.link == l, |r| &r.run);
    let done = &row.done;
    let stuck: Vec<&&PredictRun> = row.all.iter().filter(|r| r.not_converged()).collect();
    let pairs: Vec<_> = done
        .iter()
        .map(|r| (r.pacer_errors, r.naive_errors))
        .collect();
    let mut flagged = [false; 4];
    for r in done {
        for (i, f) in r.naive_from_bench.iter().enumerate() {
            flagged[i] |= *f;
        }
    }
    let recognised: Vec<Option<u64>> = stuck.iter().map(|r| r.recognised_ms).collect();
    let recognised_ok = (!recognised.is_empty()).then(|| {
        recognised
            .iter()
            .all(|r| r.is_some_and(|ms| ms <= GOAL_RECOGNISED_MS))
    });
    let recognised_max_ms = if recognised.iter().any(|r| r.is_none()) {
        None
    } else {
        recognised.iter().flatten().copied().max()
    };
    let before = median(
        &done
            .iter()
            .filter_map(|r| r.before_error)
            .collect::<Vec<_>>(),
    );
    let before_scored = !l.changes() && w != Wl::Phase;
    let before_ok = if before_scored {
        let verdicts: Vec<&BeforeVerdict> = row
            .all
            .iter()
            .filter_map(|r| r.before_verdict.as_ref())
            .collect();
        let close = before.map(|e| e <= GOAL_BEFORE_ERROR);
        let right = (!verdicts.is_empty()).then(|| verdicts.iter().all(|v| v.matched));
        match (close, right) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(true) && b.unwrap_or(true)),
        }
    } else {
        None
    };
    RowSummary {
        workload: w,
        link: l,
        runs: row.all.len(),
        completed: done.len(),
        not_converged: stuck.len(),
        total_time_ms: row.median(|r| r.run.total_time_ms),
        pacer: med_cols(done, |r| r.pacer_errors),
        naive: med_cols(done, |r| r.naive_errors),
        naive_from_bench: flagged,
        before,
        verdict: Verdict::of(&pairs),
        band: BandPool::of(done.iter().filter_map(|r| r.band.as_ref())),
        recognised_ms: recognised,
        recognised_max_ms,
        recognised_ok,
        wrong_stuck_ms: row.all.iter().map(|r| r.wrong_stuck_ms).sum(),
        before_scored,
        before_ok,
    }
}

/// One goal of the issue, and how it went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GoalLine {
    /// Short name: `accuracy`, `naive`, `recognition`, `band`, `before`.
    pub name: &'static str,
    /// The goal in words.
    pub goal: String,
    /// Met (None: nothing to score it on).
    pub met: Option<bool>,
    /// The figures behind the verdict.
    pub figures: String,
    /// Where it is not met (or could not be scored), and why.
    pub not_met_in: Vec<String>,
}

/// The goals over all rows.
#[derive(Debug, Clone, Serialize)]
pub struct Goals {
    /// Every row's Pacer median from 25% on is at most 5%.
    pub within_5pct_everywhere: bool,
    /// Every row's Pacer median is below the naive one's.
    pub below_naive_everywhere: bool,
    /// Every goal with something to score is met, and every row has an outcome.
    pub met: bool,
    /// Median over every completed run and point from 25% on.
    pub overall_pacer: Option<f64>,
    /// The same for the naive estimate.
    pub overall_naive: Option<f64>,
    /// The band over every completed run.
    pub band: BandPool,
    /// Runs that did not converge.
    pub not_converged: usize,
    /// The latest recognition among them, ms after the condition (None: none, or
    /// one never recognised).
    pub recognised_max_ms: Option<u64>,
    /// "Does not converge" in force while migrations converged, ms, over all runs.
    pub wrong_stuck_ms: u64,
    /// Median error of the prediction before the start where nothing changes.
    pub before_unchanged: Option<f64>,
    /// Each goal of the issue.
    pub list: Vec<GoalLine>,
}

pub(super) fn row_name(r: &RowSummary) -> String {
    format!("{} {}", r.workload.as_str(), r.link.as_str())
}

pub(super) fn ms_words(ms: Option<u64>) -> String {
    ms.map(|v| format!("{:.1} s", v as f64 / 1000.0))
        .unwrap_or_else(|| "never".into())
}

/// The goals' verdict.
pub fn goals(rows: &[RowSummary], runs: &[PredictRun]) -> Goals {
    let scored: Vec<&RowSummary> = rows
        .iter()
        .filter(|r| r.verdict.within_goal.is_some())
        .collect();
    let within = scored.iter().all(|r| r.verdict.within_goal == Some(true));
    let below = scored.iter().all(|r| r.verdict.beats_naive == Some(true));
    let done: Vec<&PredictRun> = runs.iter().filter(|r| r.completed()).collect();
    let all = Verdict::of(
        &done
            .iter()
            .map(|r| (r.pacer_errors, r.naive_errors))
            .collect::<Vec<_>>(),
    );
    let no_outcome: Vec<String> = rows
        .iter()
        .filter(|r| r.completed == 0 && r.not_converged == 0)
        .map(|r| format!("{} (no run finished)", row_name(r)))
        .collect();
    let mut list = Vec::new();

    // 1. Accuracy.
    let mut where1: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.within_goal == Some(false))
        .map(|r| format!("{} ({})", row_name(r), pct(r.verdict.pacer_median)))
        .collect();
    where1.extend(no_outcome.iter().cloned());
    let apps_run = rows
        .iter()
        .any(|r| matches!(r.workload, Wl::App(_)) && r.completed > 0);
    if !apps_run {
        where1.push(
            "real applications: none run (give --scenarios redis,memcached,stress,zstd)".into(),
        );
    }
    let worst = scored
        .iter()
        .filter_map(|r| r.verdict.pacer_median)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    list.push(GoalLine {
        name: "accuracy",
        goal: format!(
            "median |error| at most {:.0}% from 25% of the duration on, in every scenario \
             (real applications included)",
            GOAL_MAX_ERROR * 100.0
        ),
        met: (!scored.is_empty()).then_some(within && no_outcome.is_empty()),
        figures: format!(
            "overall {}, worst row {}, {} of {} rows scored",
            pct(all.pacer_median),
            pct(worst),
            scored.len(),
            rows.len()
        ),
        not_met_in: where1,
    });

    // 2. Below naive.
    let where2: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.beats_naive == Some(false))
        .map(|r| {
            format!(
                "{} ({} vs {})",
                row_name(r),
                pct(r.verdict.pacer_median),
                pct(r.verdict.naive_median)
            )
        })
        .collect();
    list.push(GoalLine {
        name: "naive",
        goal: "below the naive estimate's in every scenario".into(),
        met: (!scored.is_empty()).then_some(below),
        figures: format!(
            "overall Pacer {} vs naive {}",
            pct(all.pacer_median),
            pct(all.naive_median)
        ),
        not_met_in: where2,
    });

    // 3. Recognition.
    let stuck: Vec<&PredictRun> = runs.iter().filter(|r| r.not_converged()).collect();
    let late: Vec<String> = stuck
        .iter()
        .filter(|r| r.recognised_ms.is_none_or(|ms| ms > GOAL_RECOGNISED_MS))
        .map(|r| format!("{} ({})", r.tag(), ms_words(r.recognised_ms)))
        .collect();
    let recognised_max_ms = if stuck.iter().any(|r| r.recognised_ms.is_none()) {
        None
    } else {
        stuck.iter().filter_map(|r| r.recognised_ms).max()
    };
    list.push(GoalLine {
        name: "recognition",
        goal: format!(
            "a non-converging migration recognised within {} s of the condition, in every \
             such run",
            GOAL_RECOGNISED_MS / 1000
        ),
        met: (!stuck.is_empty()).then_some(late.is_empty()),
        figures: if stuck.is_empty() {
            "no run did not converge".into()
        } else {
            format!(
                "{} run(s) did not converge; recognised at the latest {} after the condition",
                stuck.len(),
                ms_words(recognised_max_ms)
            )
        },
        not_met_in: late,
    });

    // 4. Band.
    let band = BandPool::of(done.iter().filter_map(|r| r.band.as_ref()));
    let where4: Vec<String> = rows
        .iter()
        .filter(|r| r.band.within_goal() == Some(false))
        .map(|r| format!("{} ({})", row_name(r), pct(r.band.coverage)))
        .collect();
    list.push(GoalLine {
        name: "band",
        goal: format!(
            "{:.0}% bands covering {:.0}-{:.0}% of outcomes",
            BAND_COVERAGE * 100.0,
            BAND_GOAL.0 * 100.0,
            BAND_GOAL.1 * 100.0
        ),
        met: band.within_goal(),
        figures: format!(
            "{} of {} predictions ({}), mean width {} of the actual, {} with an open top",
            band.inside,
            band.scored,
            pct(band.coverage),
            pct(band.mean_width),
            band.open_top
        ),
        not_met_in: if band.within_goal() == Some(false) {
            where4
        } else {
            vec![]
        },
    });

    // 5. Before the start.
    let unchanged: Vec<&RowSummary> = rows.iter().filter(|r| r.before_scored).collect();
    let before_errs: Vec<f64> = runs
        .iter()
        .filter(|r| r.completed() && r.unchanged())
        .filter_map(|r| r.before_error)
        .collect();
    let before_unchanged = median(&before_errs);
    let mut where5: Vec<String> = unchanged
        .iter()
        .filter(|r| r.before_ok == Some(false))
        .map(|r| {
            let wrong: Vec<String> = runs
                .iter()
                .filter(|x| x.workload == r.workload && x.link == r.link)
                .filter_map(|x| x.before_verdict.as_ref())
                .filter(|v| !v.matched)
                .map(|v| format!("said {} and it {}", v.said.words(), v.happened))
                .collect();
            let mut s = format!("{} ({})", row_name(r), pct(r.before));
            if !wrong.is_empty() {
                s = format!("{s}: {}", wrong.join("; "));
            }
            s
        })
        .collect();
    if unchanged.iter().all(|r| r.before_ok.is_none()) && !unchanged.is_empty() {
        where5.push("no prediction before the start was made".into());
    }
    let before_met = if unchanged.iter().any(|r| r.before_ok.is_some()) {
        Some(unchanged.iter().all(|r| r.before_ok != Some(false)))
    } else {
        None
    };
    list.push(GoalLine {
        name: "before",
        goal: format!(
            "predictions before the start within {:.0}% where nothing changes after the start",
            GOAL_BEFORE_ERROR * 100.0
        ),
        met: before_met,
        figures: if unchanged.is_empty() {
            "no row without a change".into()
        } else {
            format!(
                "median {} over {} completed run(s) in {} row(s) without a change",
                pct(before_unchanged),
                before_errs.len(),
                unchanged.len()
            )
        },
        not_met_in: where5,
    });

    let met = list.iter().all(|g| g.met != Some(false))
        && list.iter().any(|g| g.met.is_some())
        && no_outcome.is_empty();
    Goals {
        within_5pct_everywhere: within,
        below_naive_everywhere: below,
        met,
        overall_pacer: all.pacer_median,
        overall_naive: all.naive_median,
        band,
        not_converged: stuck.len(),
        recognised_max_ms,
        wrong_stuck_ms: runs.iter().map(|r| r.wrong_stuck_ms).sum(),
        before_unchanged,
        list,
    }
}

pub(super) fn cell(e: Option<f64>, flagged: bool) -> String {
    let mut s = pct(e);
    if flagged && e.is_some() {
        s.push('+');
    }
    s
}

/// The goal cell of a row: the completed runs' verdict, and the not-converged
/// runs' recognition.
pub(super) fn goal_cell(r: &RowSummary) -> String {
    let mut parts = Vec::new();
    if r.completed > 0 {
        parts.push(r.verdict.word());
    }
    if r.not_converged > 0 {
        let w = if r.recognised_ok == Some(true) {
            "ok"
        } else {
            "MISSED 5 s"
        };
        parts.push(if r.completed > 0 {
            format!("{} not conv. {w}", r.not_converged)
        } else {
            w.to_string()
        });
    }
    if parts.is_empty() {
        return super::super::status_cell(r.runs, 0);
    }
    let failed = r.runs - r.completed - r.not_converged;
    let mut s = parts.join(", ");
    if failed > 0 {
        s.push_str(&format!(" (FAILED {failed}/{})", r.runs));
    }
    s
}
