#!/bin/sh
# Creates Engram's roles and database; mirrors what app/db/bootstrap.py does for the embedded default.
#
# The postgres image runs this once, on the first start with an empty data volume, as its superuser
# (docker-entrypoint-initdb.d). It may be executed or sourced, so it sets no shell options and ends
# with psql, whose exit status (ON_ERROR_STOP) is the script's.
#
#   engram_owner    owns the database, the schema and every table; migrations and maintenance only
#   engram_app      what the server connects as: not owner, not superuser, NOBYPASSRLS
#   engram_auditor  reads the audit log and nothing else
#
# pgvector is not a trusted extension, so the superuser creates it here; migrations find it.

: "${DB_OWNER_PASSWORD:?DB_OWNER_PASSWORD is not set}"
: "${DB_APP_PASSWORD:?DB_APP_PASSWORD is not set}"
: "${DB_AUDITOR_PASSWORD:?DB_AUDITOR_PASSWORD is not set}"

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v owner_password="$DB_OWNER_PASSWORD" \
    -v app_password="$DB_APP_PASSWORD" \
    -v auditor_password="$DB_AUDITOR_PASSWORD" <<'SQL'
CREATE ROLE engram_owner LOGIN PASSWORD :'owner_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
CREATE ROLE engram_app LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
CREATE ROLE engram_auditor LOGIN PASSWORD :'auditor_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
CREATE DATABASE engram OWNER engram_owner ENCODING 'UTF8';
REVOKE CREATE ON DATABASE engram FROM PUBLIC;
\connect engram
CREATE EXTENSION IF NOT EXISTS vector;
ALTER SCHEMA public OWNER TO engram_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
