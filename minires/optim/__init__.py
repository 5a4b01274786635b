"""``minires.optim``: optimizers (each update rule in its class's docstring) and learning-rate schedules.

    optimizer = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()

``optimizer_state_to_arrays`` / ``optimizer_state_from_arrays`` turn an optimizer's state dict
into a flat dict of arrays (for ``minires.save``) plus JSON, and back.
"""
from minires.optim import lr_scheduler
from minires.optim.adam import Adam, AdamW
from minires.optim.optimizer import Optimizer, optimizer_state_from_arrays, optimizer_state_to_arrays
from minires.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler", "optimizer_state_to_arrays",
           "optimizer_state_from_arrays"]
