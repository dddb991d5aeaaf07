//! The `perfagent` operator CLI (`perfagent --help`); the commands live in `perfagent::cli`.

fn main() -> std::process::ExitCode {
    perfagent::cli::main()
}
