"""Receipt printer and cash drawer: ESC/POS bytes out, real status in, durable print jobs."""
