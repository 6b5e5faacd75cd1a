//! The integration tests of jwkstash-file, one module per subject, in one binary. The binary
//! also runs itself again, as the writer processes of `file::two_processes_writing_at_once_*`.

mod file;
