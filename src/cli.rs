//! The command line: clap parses, a command runs, `output` prints.

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::*;
use crate::commands::{
    board::BoardArgs,
    claim::ClaimArgs,
    completions::CompletionsArgs,
    demo::DemoArgs,
    done::DoneArgs,
    export::ExportArgs,
    gc::GcArgs,
    hooks::{HookArgs, HooksArgs},
    inbox::InboxArgs,
    init::InitArgs,
    integrate::IntegrateArgs,
    log::LogArgs,
    man::ManArgs,
    merge_deps::MergeDepsArgs,
    plan::PlanArgs,
    post::PostArgs,
    release::ReleaseArgs,
    report::ReportArgs,
    review::ReviewArgs,
    run::RunArgs,
    show::ShowArgs,
    sync::SyncArgs,
    task::TaskArgs,
};
use crate::context::Ctx;
use crate::output::Report;

/// Parallel role instances on one git repository: an atomic task board and a
/// coordination log on `refs/mara/<run>`.
#[derive(Parser, Debug)]
#[command(
    name = "mara",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 done; 1 error (bad input or git failure; nothing written); \
2 usage; 3 refused by the board (held, waiting, not now; integrate: conflicts \
remain or a resolution waits for its task; plan --strict: overlapping paths); \
4 nothing left for this instance's role (claim --next): stop."
)]
pub struct Cli {
    /// The run to use (default: MARA_RUN, else git config mara.run); with `init`,
    /// the id of the new run.
    #[arg(long, global = true, value_name = "ID")]
    pub run: Option<String>,
    /// Act as this instance, e.g. implementer#2 (default: MARA_INSTANCE, else git
    /// config mara.instance).
    #[arg(long = "as", global = true, value_name = "ROLE#N")]
    pub as_instance: Option<String>,
    /// Print JSON (one value, or JSON lines for `log`).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands. Each one's arguments are built only when it is the one
/// parsed (clap's `defer`): building all twenty-nine commands' arguments was a
/// sixth of a `mara claim`'s start (issue 16). The variants' doc comments stay
/// eager, so `mara --help` lists them.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Cmd {
    /// Create the run's ref and record it as the current run.
    Init(InitArgs),
    /// Add, edit or cancel a task.
    Task(TaskArgs),
    /// Add many tasks at once from a JSON list (all or none).
    Plan(PlanArgs),
    /// Claim a task, or the first ready one with --next.
    Claim(ClaimArgs),
    /// Give a task back.
    Release(ReleaseArgs),
    /// Complete a task.
    Done(DoneArgs),
    /// Write to the channel: decision, question, answer, note, ...
    Post(PostArgs),
    /// Messages to this instance, its role or everyone since it last read.
    Inbox(InboxArgs),
    /// Merge the work of the done dependencies of my tasks into this worktree's branch.
    MergeDeps(MergeDepsArgs),
    /// Show that this instance is alive (renews its lease).
    Heartbeat,
    /// Show the task board (and what the stall guard flags).
    Board(BoardArgs),
    /// Show the coordination log.
    Log(LogArgs),
    /// Show one task: body, holder and lease, deps' work, reviews, thread, commits.
    Show(ShowArgs),
    /// Approve a done task, or send it back with --changes.
    Review(ReviewArgs),
    /// Show the run: task counts, instances, and what the stall guard flags.
    Status,
    /// Gather the instances' artifacts into .multi_agent_runs/<run>/outputs/.
    Collect,
    /// Merge the run's instance branches into one integration branch; report conflicts.
    Integrate(IntegrateArgs),
    /// Install or remove mara's git hooks (commit-msg, pre-commit, post-commit; pre-push on request).
    Hooks(HooksArgs),
    /// What the hook scripts call: `mara hook <name> [git's arguments]`.
    Hook(HookArgs),
    /// Write a self-contained HTML page of the run: board, timeline, conflicts.
    Report(ReportArgs),
    /// Serve the board to coding agents over the Model Context Protocol (stdio).
    Mcp,
    /// Fetch the run's ref from its remote and push what the remote lacks.
    Sync(SyncArgs),
    /// Write the board and the channel as files (task_board.json, coordination.log).
    Export(ExportArgs),
    /// Replay the log and check it reproduces the board.
    Verify,
    /// Merge the small packfiles events leave (writes start this in the background).
    Gc(GcArgs),
    /// Orchestrate a run: board from subtasks, then N instances per role; on a
    /// stall, warns, notifies a role or stops (coordination.on_stall).
    Run(RunArgs),
    /// Run a demo with scripted agents in a scratch repository.
    Demo(DemoArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one per command with --dir.
    Man(ManArgs),
}

impl Cli {
    /// The shared options.
    pub fn ctx(&self) -> Ctx {
        Ctx {
            run: self.run.clone(),
            as_instance: self.as_instance.clone(),
            json: self.json,
        }
    }
}

/// Runs one parsed command.
impl Cmd {
    /// Whether the command may run for long and open many ledgers (the
    /// orchestrator, the demo that drives it, the MCP server); every other
    /// command opens one and exits.
    pub fn long_lived(&self) -> bool {
        matches!(self, Cmd::Run(_) | Cmd::Demo(_) | Cmd::Mcp)
    }
}

pub fn dispatch(cli: Cli) -> Result<Report> {
    let ctx = cli.ctx();
    match cli.cmd {
        Cmd::Init(a) => init::run(&ctx, a),
        Cmd::Task(a) => task::run(&ctx, a),
        Cmd::Plan(a) => plan::run(&ctx, a),
        Cmd::Claim(a) => claim::run(&ctx, a),
        Cmd::Release(a) => release::run(&ctx, a),
        Cmd::Done(a) => done::run(&ctx, a),
        Cmd::Post(a) => post::run(&ctx, a),
        Cmd::Inbox(a) => inbox::run(&ctx, a),
        Cmd::MergeDeps(a) => merge_deps::run(&ctx, a),
        Cmd::Heartbeat => heartbeat::run(&ctx),
        Cmd::Board(a) => board::run(&ctx, a),
        Cmd::Log(a) => log::run(&ctx, a),
        Cmd::Show(a) => show::run(&ctx, a),
        Cmd::Review(a) => review::run(&ctx, a),
        Cmd::Status => status::run(&ctx),
        Cmd::Collect => collect::run(&ctx),
        Cmd::Integrate(a) => integrate::run(&ctx, a),
        Cmd::Hooks(a) => hooks::run_hooks(&ctx, a),
        Cmd::Hook(a) => hooks::run_hook(&ctx, a),
        Cmd::Report(a) => report::run(&ctx, a),
        Cmd::Mcp => crate::mcp::serve(&ctx).map(|()| Report::new("", serde_json::Value::Null)),
        Cmd::Sync(a) => sync::run(&ctx, a),
        Cmd::Export(a) => export::run(&ctx, a),
        Cmd::Verify => verify::run(&ctx),
        Cmd::Gc(a) => gc::run(&ctx, a),
        Cmd::Run(a) => run::run(&ctx, a),
        Cmd::Demo(a) => demo::run(&ctx, a),
        Cmd::Completions(a) => completions::run(Cli::command(), a),
        Cmd::Man(a) => man::run(Cli::command(), a),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
