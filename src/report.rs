//! `mara report --html FILE`: one self-contained page of a run, for people.
//!
//! The board, a timeline of every instance on a time axis (claims and completions as
//! bars, releases, decisions and conflicts as marks), the integrator's conflicts and
//! the channel. Inline CSS and SVG only: no script, no font, no network, so it opens
//! offline and from a mail attachment. The layout is fluid: tables scroll sideways
//! on a phone and the timeline's SVG scales to the width.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::board::{one_line, Board, Event, EventKind, InstanceStatus, Ts};

/// HTML-escapes text (also quotes, for attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--fg:#1d2430;--muted:#5b6678;--line:#dfe3ea;--bg:#fff;--card:#f7f8fb;
--open:#8a94a6;--claimed:#2f6fde;--done:#1f9d55;--warn:#d9822b;--bad:#d64545;--msg:#7a5af8}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.6rem 0 .6rem;border-bottom:1px solid var(--line);padding-bottom:.3rem}
.sub{color:var(--muted);margin:0 0 .8rem}
.stats{display:flex;flex-wrap:wrap;gap:8px;margin:.6rem 0}
.stat{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:6px 12px;min-width:92px}
.stat b{display:block;font-size:1.3rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%;min-width:560px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--card);font-weight:600;font-size:.85rem;color:var(--muted)}
tr:last-child td{border-bottom:0}
code{font:13px/1.3 ui-monospace,SFMono-Regular,Menlo,monospace}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:.8rem;color:#fff}
.open{background:var(--open)}.claimed{background:var(--claimed)}.done{background:var(--done)}
.review{background:var(--msg)}.cancelled{background:var(--muted)}
.failed{background:var(--bad)}.exited{background:var(--done)}.running,.starting{background:var(--claimed)}
.legend{display:flex;flex-wrap:wrap;gap:12px;color:var(--muted);font-size:.85rem;margin:.4rem 0}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:4px;vertical-align:-1px}
svg{display:block;width:100%;height:auto}#timeline svg{min-width:720px}
.empty{color:var(--muted)}
@media (max-width:600px){main{padding:10px}body{font-size:14px}.stat{min-width:70px}}
"#;

/// The timeline: one row per instance, tasks as bars from claim to done/release.
fn timeline(events: &[Event], board: &Board) -> String {
    let Some(first) = events.first().map(|e| e.ts) else {
        return "<p class=empty>no events</p>".into();
    };
    let last = events.last().map_or(first, |e| e.ts);
    let rows = timeline_rows(events, board);
    if rows.is_empty() {
        return "<p class=empty>no instance wrote an event yet</p>".into();
    }
    let plot = Plot {
        first,
        span_ms: (last - first).num_milliseconds().max(1) as f64,
        rows,
    };
    let mut svg = String::new();
    plot.draw_axes(&mut svg);
    plot.draw_lifetimes(&mut svg, &lifetimes(events, last));
    plot.draw_bars(&mut svg, &task_bars(events, last));
    plot.draw_marks(&mut svg, events);
    svg.push_str("</svg>");
    svg
}

/// The timeline's rows: every instance on the board or that wrote an event, sorted.
fn timeline_rows(events: &[Event], board: &Board) -> Vec<String> {
    let mut rows: Vec<String> = board.instances.keys().map(|i| i.to_string()).collect();
    for e in events {
        if e.sender.parse::<crate::ids::InstanceId>().is_ok() && !rows.contains(&e.sender) {
            rows.push(e.sender.clone());
        }
    }
    rows.sort();
    rows
}

/// How long an instance ran (from the orchestrator's status events).
struct Lifetime {
    who: String,
    from: Ts,
    to: Ts,
    failed: bool,
}

/// Every instance's lifetime, from starting or running to exited or failed; one
/// still running lasts to `last`.
fn lifetimes(events: &[Event], last: Ts) -> Vec<Lifetime> {
    let mut alive: BTreeMap<String, Ts> = BTreeMap::new();
    let mut spans = vec![];
    for e in events {
        if let EventKind::Status {
            instance, status, ..
        } = &e.kind
        {
            let who = instance.to_string();
            match status {
                InstanceStatus::Starting | InstanceStatus::Running => {
                    alive.entry(who).or_insert(e.ts);
                }
                InstanceStatus::Exited | InstanceStatus::Failed => {
                    if let Some(from) = alive.remove(&who) {
                        let failed = *status == InstanceStatus::Failed;
                        spans.push(Lifetime {
                            who,
                            from,
                            to: e.ts,
                            failed,
                        });
                    }
                }
            }
        }
    }
    spans.extend(alive.into_iter().map(|(who, from)| Lifetime {
        who,
        from,
        to: last,
        failed: false,
    }));
    spans
}

/// How a task's claim ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    Done,
    /// Released, or claimed again by another instance.
    Released,
    /// Still held at the last event.
    Still,
}

impl Held {
    fn color(self) -> &'static str {
        match self {
            Held::Done => "#1f9d55",
            Held::Released => "#d9822b",
            Held::Still => "#2f6fde",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Held::Done => "claimed, then done",
            Held::Released => "claimed, then released",
            Held::Still => "still held",
        }
    }
}

/// One claim of a task: who held it, from when to when, and how it ended.
struct TaskBar {
    who: String,
    task: String,
    from: Ts,
    to: Ts,
    held: Held,
}

/// Every claim of a task, from claim to done, release or reclaim; one still held
/// lasts to `last`.
fn task_bars(events: &[Event], last: Ts) -> Vec<TaskBar> {
    let mut open: BTreeMap<String, (String, Ts)> = BTreeMap::new();
    let mut bars = vec![];
    let mut close = |open: &mut BTreeMap<String, (String, Ts)>, task: &str, to: Ts, held| {
        if let Some((who, from)) = open.remove(task) {
            bars.push(TaskBar {
                who,
                task: task.to_owned(),
                from,
                to,
                held,
            });
        }
    };
    for e in events {
        match &e.kind {
            EventKind::Claim { task } | EventKind::Reclaim { task, .. } => {
                close(&mut open, task.as_str(), e.ts, Held::Released);
                open.insert(task.to_string(), (e.sender.clone(), e.ts));
            }
            EventKind::Done { task, .. } => close(&mut open, task.as_str(), e.ts, Held::Done),
            EventKind::Release { task, .. } => {
                close(&mut open, task.as_str(), e.ts, Held::Released)
            }
            _ => {}
        }
    }
    for (task, (who, from)) in open {
        bars.push(TaskBar {
            who,
            task,
            from,
            to: last,
            held: Held::Still,
        });
    }
    bars
}

/// The timeline's geometry: rows of instances against a time axis.
struct Plot {
    first: Ts,
    span_ms: f64,
    rows: Vec<String>,
}

impl Plot {
    const LABEL_W: f64 = 150.0;
    const PLOT_W: f64 = 850.0;
    const ROW_H: f64 = 34.0;
    const TOP: f64 = 28.0;

    fn width(&self) -> f64 {
        Self::LABEL_W + Self::PLOT_W + 20.0
    }

    fn height(&self) -> f64 {
        Self::TOP + Self::ROW_H * self.rows.len() as f64 + 10.0
    }

    /// Where time `t` is across.
    fn x(&self, t: Ts) -> f64 {
        Self::LABEL_W + Self::PLOT_W * ((t - self.first).num_milliseconds() as f64 / self.span_ms)
    }

    /// Where the row of `who` starts down.
    fn y(&self, who: &str) -> f64 {
        Self::TOP + Self::ROW_H * self.rows.iter().position(|r| r == who).unwrap_or(0) as f64
    }

    /// The SVG's opening tag, the time axis with five ticks, and a labelled line per
    /// row.
    fn draw_axes(&self, svg: &mut String) {
        let (label_w, plot_w, row_h, top) = (Self::LABEL_W, Self::PLOT_W, Self::ROW_H, Self::TOP);
        let (width, height, span_ms) = (self.width(), self.height(), self.span_ms);
        let _ = write!(
            svg,
            r#"<svg viewBox="0 0 {width} {height}" role="img" aria-label="timeline of every instance" font-family="system-ui,sans-serif" font-size="12">"#
        );
        for k in 0..=4 {
            let t = self.first + chrono::TimeDelta::milliseconds((span_ms * k as f64 / 4.0) as i64);
            let tx = self.x(t);
            let label = fmt_offset((t - self.first).num_milliseconds(), span_ms);
            let _ = write!(
                svg,
                r##"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{height}" stroke="#dfe3ea"/><text x="{tx:.1}" y="14" text-anchor="middle" fill="#5b6678">{label}</text>"##,
                top - 6.0
            );
        }
        for (i, who) in self.rows.iter().enumerate() {
            let ry = top + row_h * i as f64;
            let _ = write!(
                svg,
                r##"<text x="6" y="{:.1}" fill="#1d2430" font-weight="600">{}</text><line x1="{label_w}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#eef0f4"/>"##,
                ry + row_h / 2.0 + 4.0,
                esc(who),
                ry + row_h / 2.0,
                label_w + plot_w,
                ry + row_h / 2.0
            );
        }
    }

    /// Instance lifetimes: a thin line from running to its end, red when it failed.
    fn draw_lifetimes(&self, svg: &mut String, spans: &[Lifetime]) {
        for span in spans.iter().filter(|s| self.rows.contains(&s.who)) {
            let (x0, x1) = (
                self.x(span.from),
                self.x(span.to).max(self.x(span.from) + 2.0),
            );
            let _ = write!(
                svg,
                r##"<g><title>{} {} {}</title><rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="3" rx="1.5" fill="{}"/></g>"##,
                esc(&span.who),
                if span.failed {
                    "ran, then failed"
                } else {
                    "ran"
                },
                fmt_offset((span.to - span.from).num_milliseconds(), self.span_ms)
                    .trim_start_matches('+'),
                self.y(&span.who) + Self::ROW_H - 5.0,
                x1 - x0,
                if span.failed { "#d64545" } else { "#b8c0cc" }
            );
        }
    }

    /// Task bars, on the holder's row.
    fn draw_bars(&self, svg: &mut String, bars: &[TaskBar]) {
        for bar in bars.iter().filter(|b| self.rows.contains(&b.who)) {
            let (x0, x1) = (self.x(bar.from), self.x(bar.to).max(self.x(bar.from) + 3.0));
            let color = bar.held.color();
            let by = self.y(&bar.who) + 8.0;
            let _ = write!(
                svg,
                r##"<g><title>{} by {} ({})</title><rect x="{x0:.1}" y="{by:.1}" width="{:.1}" height="18" rx="4" fill="{color}" opacity="0.85"/><text x="{:.1}" y="{:.1}" fill="#fff" font-size="11">{}</text></g>"##,
                esc(&bar.task),
                esc(&bar.who),
                bar.held.title(),
                x1 - x0,
                x0 + 3.0,
                by + 13.0,
                if x1 - x0 > 22.0 {
                    esc(&bar.task)
                } else {
                    String::new()
                }
            );
        }
    }

    /// Marks: decisions and other messages, conflicts.
    fn draw_marks(&self, svg: &mut String, events: &[Event]) {
        for e in events {
            if !self.rows.contains(&e.sender) {
                continue;
            }
            let (mx, my) = (self.x(e.ts), self.y(&e.sender) + Self::ROW_H / 2.0);
            let mark = match &e.kind {
                EventKind::Message { kind, text, .. } => Some((
                    format!(
                        r##"<path d="M{mx:.1} {:.1} l4 4 l-4 4 l-4 -4z" fill="#7a5af8"/>"##,
                        my - 15.0
                    ),
                    format!("{kind}: {}", one_line(text, 120)),
                )),
                EventKind::Conflict { file, branch, .. } => Some((
                    format!(
                        r##"<path d="M{:.1} {:.1} l8 8 m0 -8 l-8 8" stroke="#d64545" stroke-width="2.5"/>"##,
                        mx - 4.0,
                        my - 4.0
                    ),
                    format!("conflict in {file} merging {branch}"),
                )),
                _ => None,
            };
            if let Some((shape, title)) = mark {
                let _ = write!(svg, "<g><title>{}</title>{shape}</g>", esc(&title));
            }
        }
    }
}

/// A time offset, as precise as the run's length asks for.
fn fmt_offset(ms: i64, span_ms: f64) -> String {
    let s = ms as f64 / 1000.0;
    if span_ms < 2_000.0 {
        format!("+{s:.2}s")
    } else if span_ms < 20_000.0 {
        format!("+{s:.1}s")
    } else if span_ms < 600_000.0 {
        format!("+{}s", ms / 1000)
    } else {
        format!("+{}m", ms / 60_000)
    }
}

/// Renders the whole page.
pub fn html(run: &str, board: &Board, events: &[Event], generated: Ts) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>mara run {run}</title><style>{CSS}</style></head><body><main>"#,
        run = esc(run)
    );
    let _ = write!(
        h,
        r#"<h1>mara run <code>{}</code></h1><p class="sub">version {} &middot; {} events &middot; generated {}</p>"#,
        esc(run),
        board.seq.unwrap_or(0),
        events.len(),
        generated.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let conflicts: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Conflict { .. }))
        .collect();
    stats(&mut h, board, conflicts.len());
    stall_section(&mut h, board, events, generated);
    h.push_str(r#"<h2>Timeline</h2><div class="legend"><span><i style="background:#2f6fde"></i>held</span><span><i style="background:#1f9d55"></i>claimed &rarr; done</span><span><i style="background:#d9822b"></i>claimed &rarr; released</span><span><i style="background:#7a5af8"></i>decision / message</span><span><i style="background:#d64545"></i>conflict / failed</span><span><i style="background:#b8c0cc"></i>instance running</span></div><div class="scroll" id="timeline">"#);
    h.push_str(&timeline(events, board));
    h.push_str("</div>");
    board_table(&mut h, board);
    instances_table(&mut h, board);
    conflicts_table(&mut h, &conflicts, events);
    channel_table(&mut h, events);
    let _ = write!(
        h,
        r#"<p class="sub" style="margin-top:1.5rem">Every row above is a commit on <code>refs/mara/{}</code>: <code>git log refs/mara/{}</code>.</p></main></body></html>"#,
        esc(run),
        esc(run)
    );
    h
}

/// The stall guard: what it flags now (a stalled run, tasks handed off too often,
/// questions left unanswered), and the stalls the orchestrator recorded.
fn stall_section(h: &mut String, board: &Board, events: &[Event], now: Ts) {
    let flags = match board.config.as_ref().map(|c| c.board_format()) {
        Some(f) if f >= 2 => board.stall_flags(now),
        // A format-1 run kept nothing for the guard: its log, replayed, tells.
        _ => crate::board::replay(events.iter().cloned()).stall_flags(now),
    };
    let recorded: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Stall { .. }))
        .collect();
    h.push_str(r#"<h2>Stall guard</h2><div id="stall">"#);
    let lines = flags.lines(now);
    if lines.is_empty() {
        let _ = write!(
            h,
            r#"<p class="empty">nothing flagged{}</p>"#,
            flags
                .last_progress
                .as_ref()
                .map_or(String::new(), |p| format!(
                    "; last progress {}, {}",
                    esc(&p.describe()),
                    p.ts.format("%Y-%m-%d %H:%M:%S UTC")
                ))
        );
    } else {
        h.push_str("<ul>");
        for l in lines {
            let _ = write!(h, r#"<li class="flag">{}</li>"#, esc(&l));
        }
        h.push_str("</ul>");
    }
    if !recorded.is_empty() {
        h.push_str(r#"<p>stalls recorded:</p><ul>"#);
        for e in recorded {
            let _ = write!(
                h,
                r#"<li data-seq="{}">{} &middot; {}</li>"#,
                e.seq,
                e.ts.format("%Y-%m-%d %H:%M:%S UTC"),
                esc(&e.subject())
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</div>");
}

/// The counts at the top: tasks by status, instances, conflicts.
fn stats(h: &mut String, board: &Board, conflicts: usize) {
    let counts = board.counts();
    let _ = write!(
        h,
        r#"<div class="stats"><div class="stat"><b>{}</b>tasks</div><div class="stat"><b>{}</b>open</div><div class="stat"><b>{}</b>claimed</div><div class="stat"><b>{}</b>done</div><div class="stat"><b>{}</b>instances</div><div class="stat"><b>{}</b>conflicts</div></div>"#,
        board.tasks.len(),
        counts.open,
        counts.claimed,
        counts.done,
        board.instances.len(),
        conflicts
    );
}

/// The board: one row per task.
fn board_table(h: &mut String, board: &Board) {
    h.push_str(r#"<h2>Board</h2><div class="scroll"><table id="board"><thead><tr><th>task</th><th>status</th><th>holder</th><th>deps</th><th>title</th><th>artifact</th></tr></thead><tbody>"#);
    for t in board.ordered_tasks() {
        let _ = write!(
            h,
            r#"<tr data-task="{id}"><td><code>{id}</code></td><td><span class="badge {st}">{st}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            t.claimed_by
                .as_ref()
                .map_or("&ndash;".into(), |c| esc(&c.to_string())),
            if t.deps.is_empty() {
                "&ndash;".into()
            } else {
                esc(&t
                    .deps
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
            },
            esc(&one_line(&t.title, 200)),
            t.artifact
                .as_deref()
                .map_or("&ndash;".into(), |a| format!("<code>{}</code>", esc(a))),
            id = esc(t.id.as_str()),
            st = t.status,
        );
    }
    h.push_str("</tbody></table></div>");
}

/// The instances: status, what each holds, when last seen, its branch.
fn instances_table(h: &mut String, board: &Board) {
    h.push_str(r#"<h2>Instances</h2><div class="scroll"><table id="instances"><thead><tr><th>instance</th><th>status</th><th>holds</th><th>last seen</th><th>branch</th><th>note</th></tr></thead><tbody>"#);
    for i in board.instances.values() {
        let holds: Vec<&str> = board
            .held_by(&i.id)
            .into_iter()
            .map(|t| t.as_str())
            .collect();
        let _ = write!(
            h,
            r#"<tr data-instance="{id}"><td><b>{id}</b></td><td><span class="badge {st}">{st}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if holds.is_empty() {
                "&ndash;".into()
            } else {
                esc(&holds.join(", "))
            },
            i.last_seen.format("%H:%M:%S"),
            i.place.as_ref().map_or("&ndash;".into(), |p| format!(
                "<code>{}</code>",
                esc(&p.branch)
            )),
            esc(i.reason.as_deref().unwrap_or("")),
            id = esc(&i.id.to_string()),
            st = i.status,
        );
    }
    h.push_str("</tbody></table></div>");
}

/// Who resolved the conflict `c` (a `resolved` event after it, of the conflicts
/// branch of the same instance branch, naming the file or no file).
fn resolution_of<'e>(
    c: &Event,
    file: &str,
    branch: &str,
    events: &'e [Event],
) -> Option<&'e Event> {
    let stem = branch.rsplit('/').next().unwrap_or(branch);
    events.iter().find(|e| {
        e.seq > c.seq
            && matches!(&e.kind, EventKind::Resolved { branch: rb, files, .. }
                if rb.rsplit('/').next() == Some(stem)
                    && rb.contains("/conflicts/")
                    && (files.is_empty() || files.iter().any(|f| f == file)))
    })
}

/// The integrator's conflicts, from its conflict events: each file of a branch once
/// (the latest report of it), open or resolved and by whom.
fn conflicts_table(h: &mut String, conflicts: &[&Event], events: &[Event]) {
    h.push_str(r#"<h2>Conflicts</h2>"#);
    if conflicts.is_empty() {
        h.push_str(r#"<p class="empty" id="conflicts">The integrator reported no conflicts.</p>"#);
        return;
    }
    h.push_str(r#"<div class="scroll"><table id="conflicts"><thead><tr><th>file</th><th>kind</th><th>branch</th><th>touched by</th><th>what mara did</th><th>status</th></tr></thead><tbody>"#);
    for (i, e) in conflicts.iter().enumerate() {
        if let EventKind::Conflict {
            file,
            branch,
            kind,
            instances,
            tasks,
            action,
            ..
        } = &e.kind
        {
            let later = conflicts[i + 1..].iter().any(|x| {
                matches!(&x.kind, EventKind::Conflict { file: f, branch: b, .. } if f == file && b == branch)
            });
            if later {
                continue;
            }
            let status = match resolution_of(e, file, branch, events) {
                Some(Event {
                    kind: EventKind::Resolved { by, commit, .. },
                    sender,
                    ..
                }) => format!(
                    "resolved by {} (merged {})",
                    by.as_deref().unwrap_or(sender),
                    commit.chars().take(10).collect::<String>()
                ),
                _ => "open".to_owned(),
            };
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
                esc(file),
                esc(kind),
                esc(branch),
                esc(&instances.join(", ")),
                if tasks.is_empty() { String::new() } else { format!(" ({})", esc(&tasks.join(", "))) },
                esc(action),
                esc(&status)
            );
        }
    }
    h.push_str("</tbody></table></div>");
}

/// The channel: decisions and other messages, oldest first.
fn channel_table(h: &mut String, events: &[Event]) {
    h.push_str(r#"<h2>Decisions and messages</h2><div class="scroll"><table id="channel"><thead><tr><th>#</th><th>time</th><th>from</th><th>type</th><th>text</th></tr></thead><tbody>"#);
    for e in events {
        if let EventKind::Message { kind, text, .. } = &e.kind {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.seq,
                e.ts.format("%H:%M:%S"),
                esc(&e.sender),
                esc(kind),
                esc(&one_line(text, 300))
            );
        }
    }
    h.push_str("</tbody></table></div>");
}
