"""The node: the data plane that sits with a provider's data. Data leaves it only as permitted results."""
