DROP TABLE markets;
