//! Task creation and responses.

use super::*;
use basalt_types::BatchItem::{CreateTask, RespondTask};
use basalt_types::TxError::*;

fn create(task: u8) -> BatchItem {
    CreateTask {
        task_id: hash(task),
        payload_hash: hash(100 + task),
    }
}

fn respond(task: u8, result: u8) -> BatchItem {
    RespondTask {
        task_id: hash(task),
        result_hash: hash(result),
    }
}

#[test]
fn only_generators_create_tasks_once() {
    let mut app = app();
    assert_eq!(
        run(&mut app, alice(), create(1)).status,
        failed(NotTaskGenerator)
    );
    assert!(app.task(&hash(1)).is_none());
    assert!(run(&mut app, generator(), create(1)).is_success());
    let task = app.task(&hash(1)).expect("created");
    assert_eq!(task.creator, generator());
    assert_eq!(task.payload_hash, hash(101));
    assert_eq!(task.response, None);
    assert_eq!(
        run(&mut app, generator(), create(1)).status,
        failed(TaskExists)
    );
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn anyone_answers_a_task_once() {
    let mut app = app();
    assert_eq!(
        run(&mut app, bob(), respond(1, 7)).status,
        failed(UnknownTask)
    );
    run(&mut app, generator(), create(1));
    let root = app.state_root();
    assert!(run(&mut app, bob(), respond(1, 7)).is_success());
    assert_ne!(app.state_root(), root);
    let task = app.task(&hash(1)).expect("exists");
    assert_eq!(task.response, Some((bob(), hash(7))));
    assert_eq!(
        run(&mut app, carol(), respond(1, 8)).status,
        failed(TaskAlreadyAnswered)
    );
    assert_eq!(
        app.task(&hash(1)).expect("exists").response,
        Some((bob(), hash(7)))
    );
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn task_changes_roll_back_with_their_batch() {
    let mut app = app();
    let items = vec![create(1), respond(1, 2), create(1)];
    let receipt = run_payload(&mut app, generator(), batch(BatchMode::Atomic, items));
    assert_eq!(
        results(&receipt),
        vec![
            ItemResult::RolledBack,
            ItemResult::RolledBack,
            ItemResult::Failed(TaskExists)
        ]
    );
    assert!(app.task(&hash(1)).is_none());
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}
