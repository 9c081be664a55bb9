"""Sequential composition."""

from ..module import Module


class Sequential(Module):
    """y = f_n(... f_1(x)); backward runs the modules in reverse order."""

    def __init__(self, *modules):
        self.layers = list(modules)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_y):
        # docs/gradients.md#sequential: the chain rule, last module first
        for layer in reversed(self.layers):
            grad_y = layer.backward(grad_y)
        return grad_y
