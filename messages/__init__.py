"""Every patient- and staff-facing sentence: catalogues per locale, rendering, inbound parsing."""
