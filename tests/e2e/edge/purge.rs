//! Purging end to end (written next).
