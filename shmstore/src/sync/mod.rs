//! Process-shared synchronisation.
