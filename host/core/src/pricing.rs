//! What receipts charge: prices and factors from the manifest's `[accounting]`.

/// Prices and factors, from the manifest's `[accounting]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// Money per CPU-second (default: USD 0.0000125, about a cloud vCPU-hour of 4.5 cents).
    pub cpu_second: f64,
    /// Money per GiB-second of peak step memory (default: USD 0.0000012).
    pub gib_second: f64,
    /// Money per kWh of energy (default: USD 0.15).
    pub kwh: f64,
    /// Grid carbon intensity, gCO2e per kWh (default: 400).
    pub grid_gco2e_per_kwh: f64,
    /// Modelled power of one busy core, in watts (default: 10).
    pub watts_per_core: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            cpu_second: 0.0000125,
            gib_second: 0.0000012,
            kwh: 0.15,
            grid_gco2e_per_kwh: 400.0,
            watts_per_core: 10.0,
        }
    }
}

impl Pricing {
    /// The money for this use: linear in each quantity, so sums of uses
    /// cost the sum of their costs.
    pub fn cost(&self, cpu_seconds: f64, gib_seconds: f64, energy_j: f64) -> f64 {
        cpu_seconds * self.cpu_second + gib_seconds * self.gib_second + energy_j / 3.6e6 * self.kwh
    }

    /// Grams of CO2-equivalent for this much energy.
    pub fn gco2e(&self, energy_j: f64) -> f64 {
        energy_j / 3.6e6 * self.grid_gco2e_per_kwh
    }
}
