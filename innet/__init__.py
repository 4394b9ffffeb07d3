"""innet: a simulator for in-network learning over communication networks.

Neural modules sit on the nodes of a network; sensors encode views of the
input, relays combine latents, the fusion node decodes the class. Training
exchanges latents forward and gradients backward over the links, and innet
accounts every byte and every second of network time that this costs.
"""

__version__ = "0.1.0"
