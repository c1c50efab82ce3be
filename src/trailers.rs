//! The `Mara-Task`, `Mara-Instance` and `Mara-Claim` trailers of commit messages: written by the
//! hooks, the ledger and the integrator, read back here for `mara log --task` and
//! the integrator's "who changed this file".

/// The trailer naming a task a commit works on.
pub const TASK: &str = "Mara-Task";
/// The trailer naming the instance that made a commit.
pub const INSTANCE: &str = "Mara-Instance";
/// The trailer carrying the claim token (the commit id of the claim or reclaim
/// event) under which the instance held the task when it committed.
pub const CLAIM: &str = "Mara-Claim";

/// The tasks and instances a commit message's trailers name, in message order.
#[derive(Debug, Default)]
pub struct Named {
    pub tasks: Vec<String>,
    pub instances: Vec<String>,
    pub claims: Vec<String>,
}

/// Reads the `Mara-Task` and `Mara-Instance` trailers of a commit message, by git's
/// trailer rules (libgit2's parser); a message libgit2 cannot parse names nobody.
pub fn parse(msg: &str) -> Named {
    let mut named = Named::default();
    if let Ok(trailers) = git2::message_trailers_strs(msg) {
        for (k, v) in trailers.iter() {
            match k {
                TASK => named.tasks.push(v.trim().to_owned()),
                INSTANCE => named.instances.push(v.trim().to_owned()),
                CLAIM => named.claims.push(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tasks_and_instances_of_the_trailer_block_only() {
        let msg = "work\n\nMara-Task: T9 in the body\n\nMara-Task: T1\nMara-Instance: implementer#2\nMara-Task:  T2 \nMara-Claim: abc\nSigned-off-by: x <x@y>\n";
        let n = parse(msg);
        assert_eq!(n.claims, ["abc"]);
        assert_eq!(n.tasks, ["T1", "T2"]);
        assert_eq!(n.instances, ["implementer#2"]);
        assert!(parse("no trailers").tasks.is_empty());
    }
}
