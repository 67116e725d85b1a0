-- Used by the test harness: an empty database, for tests of the migration runner itself.
CREATE DATABASE {database}
