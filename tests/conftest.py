from tests.support.fixtures import (  # noqa: F401  (fixtures are found by name)
    module_db,
    pg_conninfo,
    pg_server,
    settings,
)
from tests.support.schema import (  # noqa: F401
    conn,
    db,
    module_schema_db,
    schema_template,
)
