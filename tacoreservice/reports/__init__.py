"""Reports for people: an analysis decision as Markdown, HTML and PDF, with its price chart."""
