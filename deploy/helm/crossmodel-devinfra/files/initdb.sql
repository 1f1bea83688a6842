-- One database and one owning role per service that keeps data; a service cannot connect to
-- another's database. Development credentials only (docker-compose.dev.yml and the
-- crossmodel-devinfra chart both load this file).
CREATE ROLE crossmodel_auth LOGIN PASSWORD 'crossmodel_auth';
CREATE DATABASE crossmodel_auth OWNER crossmodel_auth;
REVOKE CONNECT ON DATABASE crossmodel_auth FROM PUBLIC;

CREATE ROLE crossmodel_billing LOGIN PASSWORD 'crossmodel_billing';
CREATE DATABASE crossmodel_billing OWNER crossmodel_billing;
REVOKE CONNECT ON DATABASE crossmodel_billing FROM PUBLIC;

CREATE ROLE crossmodel_usage LOGIN PASSWORD 'crossmodel_usage';
CREATE DATABASE crossmodel_usage OWNER crossmodel_usage;
REVOKE CONNECT ON DATABASE crossmodel_usage FROM PUBLIC;
