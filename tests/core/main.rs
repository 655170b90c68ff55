//! The core natively, without a host: the hostile-input catalog runs the parsers, the
//! origin check and the sealed store format on every case. (Each module's unit tests
//! sit beside it in `src/`.)

mod hostile_catalog;
