"""Warehouse tables collected from per-video Parquet artifacts.

Per-video assets never write the warehouse; they write ``artifacts/<asset>/<video_id>/<file>``
atomically. A table asset then rebuilds its DuckDB table from every video's file in one
``CREATE OR REPLACE TABLE ... AS SELECT * FROM read_parquet(glob)``. So:

- re-running a partition replaces that video's rows on the next collect, never duplicates them;
- parallel partition runs cannot lose rows (they do not share a writer);
- the table write itself is one transaction under the warehouse writer lock.
"""


from dagster import AssetExecutionContext, AssetKey, AutomationCondition, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from align_assets.metadata import table_markdown
from align_assets.resources import PlatformResource
from align_core.eligibility import variants_select_sql
from align_core.warehouse import rebuild_table_from_parquet, warehouse_lock


def collect_parquet_table(
    warehouse: DuckDBResource, platform: PlatformResource, table: str, source_asset: str, file_name: str, order_by: str,
    eligibility: tuple[str, str] | None = None,
) -> tuple[int, int, object]:
    """(Re)build ``table`` from ``artifacts/<source_asset>/*/<file_name>``; returns (rows, videos, preview).

    ``eligibility`` = (asset, file): join each row's ``eligible``/``exclusion_reason`` from that
    asset's per-video files (:mod:`align_core.eligibility`); such a joined table is rebuilt whole.
    Other tables rebuild incrementally past 2,000 videos (only changed files are read, see
    :func:`align_core.warehouse.rebuild_table_from_parquet`).
    """
    files = sorted((platform.layout.artifacts_dir / source_asset).glob(f"*/{file_name}"))
    checked = sorted((platform.layout.artifacts_dir / eligibility[0]).glob(f"*/{eligibility[1]}")) if eligibility else []
    with warehouse_lock(warehouse.database), warehouse.get_connection() as con:
        if not eligibility or not files:
            result = rebuild_table_from_parquet(warehouse.database, table, files, order_by, con=con)
            if not files:
                return 0, 0, None
            rows = result.rows
        else:
            con.execute("BEGIN TRANSACTION")
            select = variants_select_sql("$files", "$checked" if checked else None)
            con.execute(
                f'CREATE OR REPLACE TABLE "{table}" AS {select} ORDER BY {order_by}',
                {"files": [str(f) for f in files], **({"checked": [str(f) for f in checked]} if checked else {})},
            )
            con.execute("COMMIT")
            rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        preview = con.execute(f'SELECT * FROM "{table}" LIMIT 10').df()
    return int(rows), len(files), preview


def collect_table_asset(
    *, name: str, source_asset: str, file_name: str, description: str, group_name: str, order_by: str,
    table: str | None = None,
    eligibility: tuple[str, str] | None = None,
):
    """Build an unpartitioned asset that collects one Parquet file per video into a table.

    ``table`` names the DuckDB table when it must differ from the asset key (the per-video
    ``variant_quality`` asset feeds the ``variant_quality`` table, collected by
    ``variant_quality_table``).
    """
    table = table or name

    @asset(
        name=name,
        deps=[AssetKey(source_asset)] + ([AssetKey(eligibility[0])] if eligibility else []),
        group_name=group_name,
        description=description,
        automation_condition=AutomationCondition.eager(),
        kinds={"duckdb"},
    )
    def _table(context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource) -> MaterializeResult:
        rows, videos, preview = collect_parquet_table(warehouse, platform, table, source_asset, file_name, order_by, eligibility)
        metadata = {
            "dagster/row_count": rows,
            "videos": videos,
            "table": MetadataValue.text(f"{warehouse.database}::{table}"),
            "query": MetadataValue.md(f"```sql\nSELECT * FROM {table} LIMIT 10;\n```"),
        }
        if preview is not None:
            metadata["preview"] = table_markdown(preview)
        return MaterializeResult(metadata=metadata)

    return _table
