//! One-to-one wrappers of the OS calls shmstore makes; the only module that calls libc.
