//! What both backends share: the checks of every input against its bound,
//! and the figures derived from tasks (progress, attempts, whether a job
//! has started). Pure functions, no I/O.

use std::collections::HashSet;

use crate::{
    ClaimRequest, JobState, MAX_LEASE, MAX_NAME_BYTES, MAX_PAYLOAD_BYTES, MAX_REASON_BYTES,
    MAX_SETTINGS_BYTES, MAX_SOURCE_KEY_BYTES, MAX_TASKS_PER_JOB, MIN_LEASE, NewJob, QueueError,
    TaskState,
};

fn invalid(what: &'static str, why: impl Into<String>) -> QueueError {
    QueueError::Invalid {
        what,
        why: why.into(),
    }
}

/// A job id, task name, kind or worker name: `[A-Za-z0-9_.-]`, 1 to
/// [`MAX_NAME_BYTES`] bytes, so it can name a file or a URL segment.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), QueueError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(invalid(
            what,
            format!("{name:?} must be 1 to {MAX_NAME_BYTES} bytes"),
        ));
    }
    if name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(invalid(
            what,
            format!("{name:?} may hold only letters, digits, '_', '-' and '.', not first"),
        ));
    }
    Ok(())
}

fn json_len(value: &serde_json::Value) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |text| text.len())
}

pub(crate) fn check_result(result: &serde_json::Value) -> Result<(), QueueError> {
    if json_len(result) > MAX_PAYLOAD_BYTES {
        return Err(invalid(
            "task result",
            format!("larger than {MAX_PAYLOAD_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

/// Refuses a job that breaks a bound: ids and names, sizes, at least one
/// task, unique task names, dependencies only on earlier tasks.
pub fn validate_job(job: &NewJob) -> Result<(), QueueError> {
    check_name("job id", &job.id)?;
    if job.source_key.is_empty() || job.source_key.len() > MAX_SOURCE_KEY_BYTES {
        return Err(invalid(
            "source key",
            format!("must be 1 to {MAX_SOURCE_KEY_BYTES} bytes"),
        ));
    }
    if json_len(&job.settings) > MAX_SETTINGS_BYTES {
        return Err(invalid(
            "job settings",
            format!("larger than {MAX_SETTINGS_BYTES} bytes of JSON"),
        ));
    }
    if job.tasks.is_empty() || job.tasks.len() > MAX_TASKS_PER_JOB {
        return Err(invalid(
            "job tasks",
            format!(
                "a job has 1 to {MAX_TASKS_PER_JOB} tasks, not {}",
                job.tasks.len()
            ),
        ));
    }
    let mut earlier = HashSet::new();
    for task in &job.tasks {
        check_name("task name", &task.name)?;
        check_name("task kind", &task.kind)?;
        if json_len(&task.payload) > MAX_PAYLOAD_BYTES {
            return Err(invalid(
                "task payload",
                format!(
                    "{}: larger than {MAX_PAYLOAD_BYTES} bytes of JSON",
                    task.name
                ),
            ));
        }
        if !task.weight_seconds.is_finite() || task.weight_seconds < 0.0 {
            return Err(invalid(
                "task weight",
                format!(
                    "{}: {} is not a number of seconds",
                    task.name, task.weight_seconds
                ),
            ));
        }
        for dependency in &task.depends_on {
            if !earlier.contains(dependency.as_str()) {
                return Err(invalid(
                    "task dependency",
                    format!(
                        "{} depends on {dependency:?}, which is not a task listed before it",
                        task.name
                    ),
                ));
            }
        }
        if !earlier.insert(task.name.as_str()) {
            return Err(invalid(
                "task name",
                format!("{} appears twice in the job", task.name),
            ));
        }
    }
    Ok(())
}

pub(crate) fn validate_claim(request: &ClaimRequest) -> Result<(), QueueError> {
    check_name("worker name", &request.worker)?;
    if request.lease < MIN_LEASE || request.lease > MAX_LEASE {
        return Err(invalid(
            "lease",
            format!(
                "{:?} is outside {MIN_LEASE:?} to {MAX_LEASE:?}",
                request.lease
            ),
        ));
    }
    if request.kinds.len() > 64 {
        return Err(invalid("kinds", "a worker names at most 64 kinds"));
    }
    for kind in &request.kinds {
        check_name("task kind", kind)?;
    }
    Ok(())
}

/// Refuses a progress figure that is not a fraction.
pub(crate) fn check_progress(progress: f64) -> Result<f64, QueueError> {
    if !(0.0..=1.0).contains(&progress) {
        return Err(invalid(
            "progress",
            format!("{progress} is not between 0 and 1"),
        ));
    }
    Ok(progress)
}

/// A failure reason cut to [`MAX_REASON_BYTES`] at a character boundary.
pub(crate) fn truncate_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_string();
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// One task as the derived figures need it: state, weight, progress.
pub(crate) struct TaskFigures {
    pub state: TaskState,
    pub weight_seconds: f64,
    pub progress: f64,
    pub attempts: u32,
}

/// A job's progress: done tasks whole, others by their reported progress,
/// weighted by media seconds (equally when every weight is zero).
pub(crate) fn job_progress(tasks: &[TaskFigures]) -> f64 {
    let total: f64 = tasks.iter().map(|task| task.weight_seconds).sum();
    let share = |task: &TaskFigures| match task.state {
        TaskState::Done => 1.0,
        _ => task.progress,
    };
    let progress = if total > 0.0 {
        tasks
            .iter()
            .map(|task| task.weight_seconds * share(task))
            .sum::<f64>()
            / total
    } else if tasks.is_empty() {
        0.0
    } else {
        tasks.iter().map(share).sum::<f64>() / tasks.len() as f64
    };
    progress.clamp(0.0, 1.0)
}

/// The state a job shows: its stored end state, or, while active, running
/// once any task was claimed.
pub(crate) fn shown_state(stored: JobState, tasks: &[TaskFigures]) -> JobState {
    if stored.is_active() && tasks.iter().any(|task| task.attempts > 0) {
        JobState::Running
    } else {
        stored
    }
}

pub(crate) fn job_attempts(tasks: &[TaskFigures]) -> u32 {
    tasks.iter().map(|task| task.attempts).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskSpec;

    fn task(name: &str, depends_on: &[&str]) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            kind: "chunk".into(),
            payload: serde_json::json!({}),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            weight_seconds: 1.0,
        }
    }

    fn job(tasks: Vec<TaskSpec>) -> NewJob {
        NewJob {
            id: "j1".into(),
            source_key: "uploads/j1".into(),
            settings: serde_json::json!({"title": "x"}),
            tasks,
        }
    }

    #[test]
    fn jobs_breaking_a_bound_are_refused_with_what_was_wrong() {
        let cases: Vec<(NewJob, &str)> = vec![
            (job(vec![]), "job tasks"),
            (
                job(vec![task("a", &["b"]), task("b", &[])]),
                "task dependency",
            ),
            (job(vec![task("a", &["a"])]), "task dependency"),
            (job(vec![task("a", &[]), task("a", &[])]), "task name"),
            (job(vec![task("../x", &[])]), "task name"),
            (
                NewJob {
                    id: "a/b".into(),
                    ..job(vec![task("a", &[])])
                },
                "job id",
            ),
            (
                NewJob {
                    settings: serde_json::json!("x".repeat(MAX_SETTINGS_BYTES)),
                    ..job(vec![task("a", &[])])
                },
                "job settings",
            ),
            (
                job(vec![TaskSpec {
                    weight_seconds: f64::NAN,
                    ..task("a", &[])
                }]),
                "task weight",
            ),
        ];
        for (job, expected) in cases {
            match validate_job(&job) {
                Err(QueueError::Invalid { what, .. }) => assert_eq!(what, expected, "{job:?}"),
                other => panic!("{job:?}: expected invalid {expected}, got {other:?}"),
            }
        }
        validate_job(&job(vec![task("a", &[]), task("b", &["a"])])).unwrap();
    }

    #[test]
    fn progress_is_weighted_by_media_seconds() {
        let figures = |state, weight_seconds, progress| TaskFigures {
            state,
            weight_seconds,
            progress,
            attempts: 1,
        };
        let cases = [
            // One 30 s chunk done, one 10 s chunk half done: (30 + 5) / 40.
            (
                vec![
                    figures(TaskState::Done, 30.0, 0.0),
                    figures(TaskState::Running, 10.0, 0.5),
                ],
                0.875,
            ),
            // Zero weights count equally.
            (
                vec![
                    figures(TaskState::Done, 0.0, 0.0),
                    figures(TaskState::Queued, 0.0, 0.0),
                ],
                0.5,
            ),
            (vec![], 0.0),
        ];
        for (tasks, expected) in cases {
            assert!((job_progress(&tasks) - expected).abs() < 1e-9);
        }
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let cut = truncate_reason(&reason);
        assert!(cut.len() <= MAX_REASON_BYTES + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_reason("short"), "short");
    }
}
