"""What every capability stands on: the database and its tables (db, tables), queries whose SQL
is built once (queries), the errors the API answers with (errors), and time (timeutil)."""
