//! The printed table and the charts.

use super::*;

/// The table printed at the end, with the goals and notes.
pub fn render_table(order: &[(Wl, Link)], runs: &[PredictRun], opts: &PredictOpts) -> String {
    let mut out = String::new();
    let rows: Vec<RowSummary> = order.iter().map(|&(w, l)| summarize(w, l, runs)).collect();
    let line = |c: &[String]| {
        let mut s = format!("{:<9}{:<16}{:<10}", c[0], c[1], c[2]);
        for x in &c[3..7] {
            s.push_str(&format!("{x:<7}"));
        }
        s.push_str("  ");
        for x in &c[7..11] {
            s.push_str(&format!("{x:<7}"));
        }
        s.push_str("  ");
        s.push_str(&format!(
            "{:<8}{:<8}{:<9}{:<7}{:<7}{:<8}{}",
            c[11], c[12], c[13], c[14], c[15], c[16], c[17]
        ));
        s.trim_end().to_string() + "\n"
    };
    let medians = if opts.runs > 1 {
        format!(" (medians of {} runs)", opts.runs)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{:<35}{:<30}{:<30}{:<25}{}{medians}\n",
        "", "Pacer |error| at", "naive |error| at", "from 25% on", "80% band"
    ));
    let head: Vec<String> = [
        "workload", "link", "actual", "10%", "25%", "50%", "75%", "10%", "25%", "50%", "75%",
        "Pacer", "naive", "before", "cover", "width", "recog", "goal",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push_str(&line(&head));
    for r in &rows {
        let actual = if r.completed == 0 && r.not_converged > 0 {
            "not conv.".to_string()
        } else {
            fmt_total(r.total_time_ms)
        };
        let mut c = vec![
            r.workload.as_str().to_string(),
            r.link.as_str().to_string(),
            actual,
        ];
        c.extend(r.pacer.iter().map(|e| pct(*e)));
        c.extend(
            r.naive
                .iter()
                .zip(r.naive_from_bench)
                .map(|(e, f)| cell(*e, f)),
        );
        c.push(pct(r.verdict.pacer_median));
        c.push(pct(r.verdict.naive_median));
        c.push(pct(r.before));
        c.push(pct(r.band.coverage));
        c.push(pct(r.band.mean_width));
        c.push(if r.not_converged > 0 {
            ms_words(r.recognised_max_ms)
        } else {
            "-".into()
        });
        c.push(goal_cell(r));
        out.push_str(&line(&c));
    }
    let done: Vec<&PredictRun> = runs.iter().filter(|r| r.completed()).collect();
    let g = goals(&rows, runs);
    let mut c = vec![
        "median".to_string(),
        "(all runs)".to_string(),
        String::new(),
    ];
    c.extend(med_cols(&done, |r| r.pacer_errors).iter().map(|e| pct(*e)));
    c.extend(med_cols(&done, |r| r.naive_errors).iter().map(|e| pct(*e)));
    c.push(pct(g.overall_pacer));
    c.push(pct(g.overall_naive));
    c.push(pct(median(
        &done
            .iter()
            .filter_map(|r| r.before_error)
            .collect::<Vec<_>>(),
    )));
    c.push(pct(g.band.coverage));
    c.push(pct(g.band.mean_width));
    c.push(if g.not_converged > 0 {
        ms_words(g.recognised_max_ms)
    } else {
        "-".into()
    });
    c.push(String::new());
    out.push_str(&line(&c));

    out.push_str(
        "\n|error| = |predicted total - actual total| / actual total, of the prediction in force \
         (the last made) at 10, 25, 50 and 75% of the actual duration; '-': none made yet (the \
         first comes once the destination is ready); 'never': a \"does not converge\" \
         prediction in force in a migration that ended (an infinite error); 'before': Pacer's \
         prediction just before the start (`pacer predict`).\n",
    );
    out.push_str(&format!(
        "cover: the share of Pacer's predictions, from {:.0}% of the actual duration to its end, \
         whose {:.0}% band held the actual total (an open top holds any late finish); width: \
         the band's mean (high - low) / actual, open tops left out; recog: for a migration that \
         did not converge, how soon after the condition (dirty rate above the link: the start, \
         or the link's fall) Pacer first said so (the latest of the row's runs).\n",
        super::super::score::BAND_FROM * 100.0,
        BAND_COVERAGE * 100.0
    ));
    if rows.iter().any(|r| r.naive_from_bench.iter().any(|f| *f)) {
        out.push_str(
            "+: the agent records no naive estimate while disks are copied; this one is the \
             bench's own, from the job's progress (elapsed + disk and memory left / disk copy rate).\n",
        );
    }
    let at = |v: &[Option<f64>; 4]| v.map(pct).join(" ");
    out.push_str(&format!(
        "band at 10/25/50/75% (all completed runs): held the actual in {}; width {}\n",
        at(&g.band.coverage_at),
        at(&g.band.width_at)
    ));
    let open: Vec<String> = rows
        .iter()
        .filter(|r| r.band.open_top > 0)
        .map(|r| format!("{} {} of {}", row_name(r), r.band.open_top, r.band.scored))
        .collect();
    if !open.is_empty() {
        out.push_str(&format!(
            "bands with an open top (no late end; not in the widths): {}\n",
            open.join(", ")
        ));
    }

    let apps_run = rows
        .iter()
        .any(|r| matches!(r.workload, Wl::App(_)) && r.completed > 0);
    out.push_str(&format!(
        "\ngoals (issue 9): {}{}\n",
        if g.met { "MET" } else { "NOT MET" },
        if apps_run {
            ""
        } else {
            " (without real applications: none was run)"
        }
    ));
    for (i, l) in g.list.iter().enumerate() {
        let word = match l.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "n/a",
        };
        out.push_str(&format!(
            "  {}. {}: {word} ({})\n",
            i + 1,
            l.goal,
            l.figures
        ));
        let prefix = match l.met {
            Some(false) => "not met",
            None => "not scored",
            Some(true) => "note",
        };
        if l.met != Some(true) || l.name == "accuracy" {
            for w in &l.not_met_in {
                out.push_str(&format!("     {prefix}: {w}\n"));
            }
        }
    }
    let wrong: Vec<String> = runs
        .iter()
        .filter(|r| r.wrong_stuck_ms > 0)
        .map(|r| {
            format!(
                "  {}: {} in force ({} prediction(s)){}",
                r.tag(),
                ms_words(Some(r.wrong_stuck_ms)),
                r.wrong_stuck_predictions,
                if r.not_converged() {
                    ", before the condition"
                } else {
                    ", an infinite error while in force"
                }
            )
        })
        .collect();
    if wrong.is_empty() {
        if runs.iter().any(|r| r.finished()) {
            out.push_str("\nno \"does not converge\" prediction while a migration converged\n");
        }
    } else {
        push_list(
            &mut out,
            "\"does not converge\" said while the migration converged",
            &wrong,
        );
    }
    let before: Vec<String> = runs
        .iter()
        .filter_map(|r| Some((r, r.before_verdict.as_ref()?)))
        .filter(|(_, v)| v.said != Said::Converges || !v.matched)
        .map(|(r, v)| {
            format!(
                "  {}: said {} (chance it ends {:.0}%) and it {}: {}",
                r.tag(),
                v.said.words(),
                v.completes_chance * 100.0,
                v.happened,
                match (v.matched, v.leaned_right) {
                    (false, _) => "WRONG".to_string(),
                    (true, Some(true)) => "both possible, leaned right".to_string(),
                    (true, Some(false)) => "both possible, leaned wrong".to_string(),
                    (true, None) => "right".to_string(),
                }
            )
        })
        .collect();
    push_list(
        &mut out,
        "before the start (rows without a change): not a plain \"converges\", or wrong",
        &before,
    );
    let stuck: Vec<String> = runs
        .iter()
        .filter(|r| r.not_converged())
        .map(|r| {
            let src = match &r.source_check {
                Some(s) if s.ok => "the VM stayed at the source (running, same QEMU)".to_string(),
                Some(s) => format!(
                    "the VM at the source: {} ({}){}",
                    s.state.as_deref().unwrap_or("unknown"),
                    if s.same_qemu {
                        "same QEMU"
                    } else {
                        "NOT the same QEMU"
                    },
                    if s.at_destination {
                        ", and running at the destination"
                    } else {
                        ""
                    }
                ),
                None => "where the VM is was not checked".into(),
            };
            format!(
                "  {}: {}; cancelled: {}; {src}{}",
                r.tag(),
                r.recognition_words(),
                r.cut.as_deref().unwrap_or("no reason given"),
                r.relapsed_ms
                    .filter(|ms| *ms > 0)
                    .map(|ms| format!(
                        "; a converging prediction again for {:.1} s",
                        ms as f64 / 1000.0
                    ))
                    .unwrap_or_default()
            )
        })
        .collect();
    push_list(&mut out, "runs that did not converge", &stuck);
    let surprises: Vec<String> = runs
        .iter()
        .filter(|r| {
            (r.completed() && r.expect == Expect::DoesNotConverge)
                || (r.not_converged() && r.expect == Expect::Converges)
        })
        .map(|r| {
            format!(
                "  {}: expected to {}, it {}",
                r.tag(),
                if r.expect == Expect::Converges {
                    "converge"
                } else {
                    "not converge"
                },
                r.run.status
            )
        })
        .collect();
    push_list(&mut out, "outcomes the bench did not expect", &surprises);

    out.push_str("\nworkloads (pre-copy, 300 ms downtime limit):\n");
    let mut seen = Vec::new();
    for &(w, _) in order {
        if !seen.contains(&w) {
            seen.push(w);
            out.push_str(&format!("  {:<9} {}\n", w.as_str(), w.describe(opts)));
        }
    }
    out.push_str(&format!(
        "changes: at {:.0}% of the expected duration (the same workload's (phase: idle's) run \
         over 1gbit for a changing link, over its own link otherwise; else Pacer's prediction \
         before the start, else one pass of \
         memory over the starting link) the link changes (changing: to {CHANGED}; rising: to \
         {FAST}; falling: to {SLOW}) and the phase workload's writer is resumed.\n",
        opts.change_at * 100.0
    ));
    for r in runs.iter().filter(|r| r.change.is_some()) {
        let c = r.change.as_ref().expect("filtered");
        out.push_str(&format!(
            "  {}: {} at {:.1} s ({:.0}% of {:.1} s, {}){}\n",
            r.tag(),
            c.what.join(" and "),
            c.planned_ms as f64 / 1000.0,
            opts.change_at * 100.0,
            c.expected_ms as f64 / 1000.0,
            c.expected_from,
            match (c.made_ms, r.run.total_time_ms) {
                (None, _) => "; NOT MADE: the migration ended first".to_string(),
                (Some(m), Some(t)) => format!(
                    "; made at {:.0}% of the actual",
                    m as f64 * 100.0 / t as f64
                ),
                (Some(m), None) => format!("; made at {:.1} s", m as f64 / 1000.0),
            }
        ));
    }
    let notes: Vec<String> = runs
        .iter()
        .filter(|r| !r.finished() || r.run.integrity_ok == Some(false))
        .map(|r| {
            format!(
                "  {}: {}: {}",
                r.tag(),
                if r.completed() {
                    "guest check FAILED"
                } else {
                    r.run.status.as_str()
                },
                r.run.why()
            )
        })
        .collect();
    push_list(&mut out, "failed runs", &notes);
    out
}

/// The plot of one run: predicted total with its band, the naive estimate and
/// the actual total (if it ended), against elapsed time; "does not converge"
/// predictions are marks at the top.
pub fn chart(r: &PredictRun, ram_bytes: u64) -> Option<Chart> {
    if !r.finished() {
        return None;
    }
    let actual_ms = r.run.total_time_ms.filter(|_| r.completed());
    let s = |ms: u64| ms as f64 / 1000.0;
    let title = format!(
        "{} over {} (run {}): {}",
        r.workload.as_str(),
        r.link.as_str(),
        r.repeat,
        if actual_ms.is_some() {
            "predicted vs actual total"
        } else {
            "did not converge (cancelled)"
        }
    );
    let mut c = prediction_chart_of(
        title,
        &r.run.predictions,
        actual_ms,
        "naive: elapsed + left / rate (agent)",
    );
    let lines = &mut c.lines;
    if r.naive_from_bench.iter().any(|f| *f) {
        let own: Vec<(f64, f64)> = bench_naive(&r.samples, ram_bytes)
            .iter()
            .filter(|e| {
                r.samples
                    .iter()
                    .any(|x| x.elapsed_ms == e.at_ms && x.copying_disks())
            })
            .map(|e| (s(e.at_ms), s(e.total_ms)))
            .collect();
        let mut l = Line::new("naive during the disk copy (bench)", PALETTE[4], own).dashed();
        l.markers = false;
        lines.push(l);
    }
    if let Some(t) = r.before.as_ref().and_then(|b| b.total_ms) {
        lines.push(Line::new(
            "Pacer before the start",
            PALETTE[3],
            vec![(0.0, s(t))],
        ));
    }
    let mut vrules = Vec::new();
    if let Some(ch) = &r.change {
        if let Some(m) = ch.made_job_ms.or(ch.made_ms) {
            vrules.push(Rule::new(&ch.what.join(" and "), PALETTE[2], false, s(m)));
        }
    }
    match actual_ms {
        Some(a) => {
            for (i, f) in FRACTIONS.iter().enumerate() {
                let label = if i == 0 {
                    "scored at 10, 25, 50, 75% of the actual"
                } else {
                    ""
                };
                vrules.push(Rule::new(label, "#aaaaaa", true, f * s(a)));
            }
        }
        None => {
            if let (Some(cond), Some(rec)) = (r.condition_ms, r.recognised_ms) {
                vrules.push(Rule::new(
                    &format!(
                        "Pacer said it does not converge ({:.1} s after the condition)",
                        s(rec)
                    ),
                    PALETTE[5],
                    true,
                    s(cond + rec),
                ));
            }
        }
    }
    c.vrules = vrules;
    Some(c)
}
