ALTER TABLE markets DROP COLUMN version;
