//! The `openai` runner (in progress).
