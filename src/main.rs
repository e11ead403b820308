use clap::{Parser, Subcommand};
use higress_route_worker::higress::{ConsoleVersion, Settings};
use higress_route_worker::{event, render};
use std::path::PathBuf;
use std::process::ExitCode;

/// Applies model lifecycle events from Kafka to the Higress AI gateway, exactly as the Higress console writes its objects.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct MappingArgs {
    /// Namespace of the Higress controller, where the console keeps its objects.
    #[arg(long, env = "HRW_NAMESPACE", default_value = "higress-system")]
    namespace: String,
    /// Higress console version whose conventions to write (plugin version labels, defaults).
    #[arg(long, env = "HRW_CONSOLE_VERSION", default_value = "v2.2.4")]
    console_version: ConsoleVersion,
    /// Do not bind new routes to ai-statistics (the console's AI_ROUTE_AUTO_ENABLE_AI_STATS=false).
    #[arg(long, env = "HRW_NO_AI_STATISTICS")]
    no_ai_statistics: bool,
    /// Do not enable model-router for model predicates (AI_ROUTE_AUTO_ENABLE_MODEL_ROUTER=false).
    #[arg(long, env = "HRW_NO_MODEL_ROUTER")]
    no_model_router: bool,
    /// Days a retired model's tombstone is kept.
    #[arg(long, env = "HRW_TOMBSTONE_DAYS", default_value_t = 7)]
    tombstone_days: i64,
}

impl MappingArgs {
    fn settings(&self) -> Settings {
        Settings {
            namespace: self.namespace.clone(),
            console: self.console_version,
            ai_statistics: !self.no_ai_statistics,
            model_router: !self.no_model_router,
            tombstone_ttl: chrono::Duration::days(self.tombstone_days),
            ..Settings::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Dry run: print, as YAML, every object an event creates or changes, given the current objects.
    Render {
        /// The event, a CloudEvent in structured JSON mode.
        #[arg(long)]
        event: PathBuf,
        /// Current objects: a YAML file or a directory of them (default: an empty cluster).
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        mapping: MappingArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Render { event, state, mapping } => render_command(&event, state.as_deref(), &mapping.settings()),
    }
}

fn render_command(event_path: &std::path::Path, state: Option<&std::path::Path>, settings: &Settings) -> ExitCode {
    let bytes = match std::fs::read(event_path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", event_path.display());
            return ExitCode::from(1);
        }
    };
    let event = match event::parse(&bytes) {
        Ok(event) => event,
        Err(invalid) => {
            eprintln!("error: invalid event ({})", invalid.reason.as_str());
            for problem in &invalid.problems {
                eprintln!("  {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let state = match state.map(render::load_state).transpose() {
        Ok(state) => state.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: cannot load state: {e}");
            return ExitCode::from(1);
        }
    };
    match render::render(&event, &state, settings, chrono::Utc::now()) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(refusal) => {
            eprintln!("error: rejected ({}): {}", refusal.reason, refusal.message);
            ExitCode::from(2)
        }
    }
}
