"""Tools that evaluate Elastic Security's prebuilt indicator-match rules the way its detection
engine does (KQL → query DSL, threat mapping by ``terms``), for the tests of issue 12."""
