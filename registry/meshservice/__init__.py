"""Kuma's current service model: MeshService and its kin, and the hostnames
HostnameGenerators give them. What the view needs of them (states), hostname templates
(templates) and who gets which hostname (hostnames), which dataplanes a MeshService
selects (selection), each mesh's Destinations kept current (destinations), the status a
GET shows (status), and MeshServices generated from the dataplanes (generate)."""
