-- mlsd fleet: the roles and grants of the shared PostgreSQL database.
--
-- Run as a superuser (or a role with CREATEROLE) with psql, in the fleet's database:
--
--   createdb mlsd                                          # once
--   psql -d mlsd -v owner=mlsd_owner -f fleet-roles.sql    # once: owner and group role
--   psql -d mlsd -v owner=mlsd_owner -v node=mx1.example.org -f fleet-roles.sql   # per node
--
-- Then set each role's password (psql: \password "mx1.example.org"), put it in the node's
-- [fleet] password_file, and point its [fleet] url at the database with the role as user:
--   url = postgresql://mx1.example.org@db.example.org/mlsd
-- The url never holds the password: mlsd refuses one that does.
--
-- Who may do what:
--   owner       owns the tables: the first mlsd that connects with the owner's url creates
--               and migrates the schema (mlsd_schema, mlsd_events, mlsd_positions; from
--               schema version 2 mlsd_logins, mlsd_login_positions; from version 3 the
--               day totals mlsd_day_values, mlsd_day_nodes, mlsd_nodes, mlsd_rollup_zone,
--               kept by the trigger mlsd_roll_up, which runs with the owner's rights), and
--               an mlsd connected as the owner applies [fleet] keep_months to the
--               partitioned tables (DROP of whole monthly partitions). Upgrading the fleet
--               to a newer schema: start the owner's node with the new mlsd first (node
--               roles may not migrate). Connect one node (the one that mails the fleet
--               report) as the owner, or run that node's mlsd once with the owner's url.
--   mlsd_node   a group role, NOLOGIN: INSERT on mlsd_events and mlsd_logins,
--               SELECT/INSERT/UPDATE on mlsd_positions and mlsd_login_positions, EXECUTE on
--               mlsd_ensure_partitions (which makes a month's partition with the owner's
--               rights, for those two tables only). No DELETE, no UPDATE of events, no
--               grant on the partitions themselves (inserting through the parent is what
--               the row-level security policies check).
--   each node   a login role named exactly as the node's [fleet] node (default: its host
--               name), member of mlsd_node. The schema's row-level security policies say
--               `node = current_user`: a node's role can insert rows (failures and logins)
--               only for its own node and move only its own positions; the day totals
--               count those rows and nothing a node can write. A stolen node password can
--               add rows under that node's name, nothing else.
--
-- Safe to run again: existing roles are kept, grants are repeated.

\set ON_ERROR_STOP on

\if :{?owner}
\else
  \echo 'set the owner role: psql -v owner=mlsd_owner -f fleet-roles.sql'
  \quit
\endif

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') AS need_owner \gset
\if :need_owner
  CREATE ROLE :"owner" LOGIN;
\endif
-- The owner creates the tables in the public schema of this database.
GRANT CREATE, USAGE ON SCHEMA public TO :"owner";

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlsd_node') AS need_group \gset
\if :need_group
  CREATE ROLE mlsd_node NOLOGIN;
\endif
GRANT USAGE ON SCHEMA public TO mlsd_node;
-- Each batch is copied into a temporary table first (COPY cannot write through row-level
-- security); PUBLIC has this by default, granted here in case it was revoked.
GRANT TEMPORARY ON DATABASE :"DBNAME" TO mlsd_node;

-- The schema's own migration grants these when mlsd_node exists; repeated here for a
-- database migrated before this script ran.
SELECT to_regclass('mlsd_events') IS NOT NULL AS have_schema \gset
\if :have_schema
  GRANT SELECT ON mlsd_schema TO mlsd_node;
  GRANT INSERT ON mlsd_events TO mlsd_node;
  GRANT SELECT, INSERT, UPDATE ON mlsd_positions TO mlsd_node;
  GRANT EXECUTE ON FUNCTION mlsd_ensure_partitions(date, date) TO mlsd_node;
\endif
SELECT to_regclass('mlsd_logins') IS NOT NULL AS have_logins \gset
\if :have_logins
  GRANT INSERT ON mlsd_logins TO mlsd_node;
  GRANT SELECT, INSERT, UPDATE ON mlsd_login_positions TO mlsd_node;
  GRANT EXECUTE ON FUNCTION mlsd_ensure_partitions(text, date, date) TO mlsd_node;
\endif

\if :{?node}
  SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'node') AS need_node \gset
  \if :need_node
    CREATE ROLE :"node" LOGIN IN ROLE mlsd_node;
  \else
    GRANT mlsd_node TO :"node";
  \endif
\endif
