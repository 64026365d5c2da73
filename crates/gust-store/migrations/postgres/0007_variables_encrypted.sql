-- Version 7: variables' values are encrypted with the Fernet key, as connections' secrets are
-- (Airflow's `variable.is_encrypted`). Rows written before stay readable as plain text until the
-- first start of a scheduler or API server encrypts them (Store::encrypt_plain_variables): the
-- key is not known to SQL.
ALTER TABLE variables ADD COLUMN is_encrypted BOOLEAN NOT NULL DEFAULT FALSE;
